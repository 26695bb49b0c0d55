//! Microsoft's GUID conventions.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

/// Parses a GUID in the forms clients send (any case, hyphenated).
pub fn parse(s: &str) -> Option<Uuid> {
    if s.len() != 36 {
        return None;
    }
    Uuid::parse_str(s).ok()
}

/// base64url (no padding) of the GUID in Microsoft's little-endian byte order, as used in the
/// FMI-path `sub` of a T1 (`/eid1/c/pub/t/{T}/a/{A}/{agent}`).
pub fn to_b64_le(id: &Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.to_bytes_le())
}

/// Inverse of [`to_b64_le`].
pub fn from_b64_le(s: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
    let arr: [u8; 16] = bytes.try_into().ok()?;
    Some(Uuid::from_bytes_le(arr))
}

/// The FMI path of a T1: tenant, blueprint and agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FmiPath {
    pub tenant: Uuid,
    pub blueprint_app: Uuid,
    pub agent: String,
}

impl FmiPath {
    pub fn render(&self) -> String {
        format!(
            "/eid1/c/pub/t/{}/a/{}/{}",
            to_b64_le(&self.tenant),
            to_b64_le(&self.blueprint_app),
            self.agent
        )
    }

    pub fn parse(sub: &str) -> Option<FmiPath> {
        let rest = sub.strip_prefix("/eid1/c/pub/t/")?;
        let mut parts = rest.splitn(4, '/');
        let tenant = from_b64_le(parts.next()?)?;
        if parts.next()? != "a" {
            return None;
        }
        let blueprint_app = from_b64_le(parts.next()?)?;
        let agent = parts.next()?.to_string();
        if agent.is_empty() || agent.contains('/') {
            return None;
        }
        Some(FmiPath {
            tenant,
            blueprint_app,
            agent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_segment_matches_entra_example() {
        let t = Uuid::parse_str("72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap();
        assert_eq!(to_b64_le(&t), "v4j5cvGGr0GRqy180BHbRw");
        assert_eq!(from_b64_le("v4j5cvGGr0GRqy180BHbRw"), Some(t));
    }

    #[test]
    fn fmi_path_round_trips() {
        let p = FmiPath {
            tenant: Uuid::new_v4(),
            blueprint_app: Uuid::new_v4(),
            agent: Uuid::new_v4().to_string(),
        };
        assert_eq!(FmiPath::parse(&p.render()), Some(p));
        assert_eq!(FmiPath::parse("/eid1/c/pub/t/x/a/y/z"), None);
        assert_eq!(parse("not-a-guid"), None);
    }
}
