//! The token endpoint's form body: parsed once, with Entra's tolerance rules (sts.md §6.1).

use crate::error::OAuthError;
use std::collections::HashMap;

/// At most 64 KiB of body.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Form parameters, each present at most once. Values are never logged: they hold secrets.
#[derive(Default)]
pub struct Form(HashMap<String, String>);

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Form {
    /// Parses `application/x-www-form-urlencoded`; a repeated parameter is malformed.
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        if std::str::from_utf8(body).is_err() {
            return Err(OAuthError::malformed(
                "The request body is not valid UTF-8.",
            ));
        }
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(OAuthError::malformed(format!(
                    "The parameter '{k}' is duplicated."
                )));
            }
        }
        Ok(Self(map))
    }

    /// A parameter's value; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::missing_parameter(name))
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

/// Checks the content type: `application/x-www-form-urlencoded`, optionally with a charset.
pub fn check_content_type(value: Option<&str>) -> Result<(), OAuthError> {
    let ok = value.and_then(|v| v.split(';').next()).is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if ok {
        Ok(())
    } else {
        Err(OAuthError::malformed(
            "The request body must be application/x-www-form-urlencoded.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_parameters_are_malformed() {
        assert_eq!(Form::parse(b"a=1&a=2").unwrap_err().code, 9002313);
        let f = Form::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), None);
        assert_eq!(f.get("c"), Some("x y"));
        assert_eq!(f.require("z").unwrap_err().code, 900144);
    }

    #[test]
    fn content_type_allows_charset() {
        assert!(
            check_content_type(Some("application/x-www-form-urlencoded; charset=utf-8")).is_ok()
        );
        assert!(check_content_type(Some("application/json")).is_err());
        assert!(check_content_type(None).is_err());
    }
}
