//! The token endpoint's form body: parsed once, with Entra's tolerance rules (docs/sts.md §6.1).

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
    /// Parses `application/x-www-form-urlencoded`: `&`-separated pairs, `+` for space,
    /// percent-escapes. A repeated parameter, or bytes that are not UTF-8 (raw or after
    /// percent-decoding), make the request malformed; invalid escapes such as `%ZZ` stay as
    /// written, as in browsers.
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| OAuthError::malformed("The request body is not valid UTF-8."))?;
        let mut map = HashMap::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k)?;
            let v = decode(v)?;
            if map.contains_key(&k) {
                let shown: String = k.chars().take(64).collect();
                return Err(OAuthError::malformed(format!(
                    "The parameter '{shown}' is duplicated."
                )));
            }
            map.insert(k, v);
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

/// One name or value: `+` is a space, then percent-escapes are decoded; the result must be
/// UTF-8.
fn decode(raw: &str) -> Result<String, OAuthError> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            OAuthError::malformed("A parameter is not valid UTF-8 after percent-decoding.")
        })
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
    fn encodings() {
        let f = Form::parse(b"a=x+y%2Bz&b=%ZZ&c&=v&&d=%E2%82%AC").unwrap();
        assert_eq!(f.get("a"), Some("x y+z"));
        assert_eq!(
            f.get("b"),
            Some("%ZZ"),
            "an invalid escape stays as written"
        );
        assert_eq!(f.get("c"), None, "no value counts as absent");
        assert_eq!(f.get("d"), Some("€"));
        assert!(f.has("d"));
        for bad in [&b"a=%C3%28"[..], b"a=\xff", b"%FF=1", b"a=1&%61=2"] {
            let e = Form::parse(bad).unwrap_err();
            assert_eq!((e.code, e.status().as_u16()), (9002313, 400), "{bad:?}");
        }
        assert!(Form::parse(&[b'a', b'=', 0xff]).is_err());
    }

    mod props {
        use super::*;
        use proptest::collection::{hash_map, vec};
        use proptest::prelude::*;

        /// Every refusal of the form parser: invalid_request, AADSTS9002313, 400.
        fn entra_malformed(e: &OAuthError) -> bool {
            e.error == "invalid_request" && e.code == 9002313 && e.status().as_u16() == 400
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_bytes_parse_or_are_malformed(body in vec(any::<u8>(), 0..2048)) {
                if let Err(e) = Form::parse(&body) {
                    prop_assert!(entra_malformed(&e), "{e}");
                }
            }

            #[test]
            fn form_like_text_parses_or_is_malformed(
                body in "([a-z_%+=&]|%[0-9A-Fa-f]{2}|%[^0-9A-Fa-f]{0,2}|[\\PC]){0,200}"
            ) {
                if let Err(e) = Form::parse(body.as_bytes()) {
                    prop_assert!(entra_malformed(&e), "{e}");
                }
            }

            #[test]
            fn what_a_client_encodes_comes_back(
                params in hash_map("[a-zA-Z_:.\\PC]{1,24}", "\\PC{0,300}", 0..12)
            ) {
                let body = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params.iter())
                    .finish();
                let f = Form::parse(body.as_bytes()).expect("a well-formed form");
                for (k, v) in &params {
                    let expected = (!v.is_empty()).then_some(v.as_str());
                    prop_assert_eq!(f.get(k), expected);
                }
            }

            #[test]
            fn a_repeated_parameter_is_malformed(
                k in "[a-z_]{1,16}", v1 in "\\PC{0,20}", v2 in "\\PC{0,20}",
                before in "[a-z]{0,3}"
            ) {
                let body = form_urlencoded::Serializer::new(String::new())
                    .append_pair(&k, &v1)
                    .append_pair(&format!("{before}x"), "1")
                    .append_pair(&k, &v2)
                    .finish();
                let e = Form::parse(body.as_bytes()).unwrap_err();
                prop_assert!(entra_malformed(&e));
                prop_assert!(e.description.contains("is duplicated"), "{}", e.description);
            }

            #[test]
            fn huge_values_are_kept_whole(n in 1usize..70_000) {
                let body = format!("client_assertion={}", "A".repeat(n));
                let f = Form::parse(body.as_bytes()).unwrap();
                prop_assert_eq!(f.get("client_assertion").map(str::len), Some(n));
            }

            #[test]
            fn content_types_are_checked_without_panics(ct in "\\PC{0,80}") {
                if let Err(e) = check_content_type(Some(&ct)) {
                    prop_assert!(entra_malformed(&e));
                }
            }
        }
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
