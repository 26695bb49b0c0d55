//! What an application may register, checked once for every write path (Graph and tenant
//! files): identifier URIs it may claim (Entra's restrictions on `identifierUris`) and the
//! redirect URIs a browser may be sent to.
//!
//! Both values come out as types ([`IdentifierUri`], [`RedirectUri`]) that only these
//! functions construct, so a caller cannot store an unchecked URI by accident.

use uuid::Uuid;

/// Who is claiming an identifier URI: the application, its tenant and the tenant's verified
/// domains (the domains of the tenant file; agentid has no unverified domains).
#[derive(Debug, Clone, Copy)]
pub struct UriOwner<'a> {
    pub tenant_id: Uuid,
    pub app_id: Uuid,
    pub verified_domains: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierUriError {
    #[error("'{0}' is not an absolute URI")]
    NotAbsolute(String),
    /// Entra's text (Graph code `HostNameNotOnVerifiedDomain`).
    #[error(
        "Values of identifierUris property must use a verified domain of the organization or its subdomain: '{0}'"
    )]
    NotOnVerifiedDomain(String),
    #[error("'{0}' must not contain a query string, a fragment or a wildcard")]
    QueryOrFragment(String),
}

/// An identifier URI the application is allowed to claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierUri(String);

impl IdentifierUri {
    /// Entra's secure patterns (identifier URI restrictions):
    /// `api://{own appId}[/…]`, `api://{tenantId}/{string}`, `api://{string}/{own appId}`,
    /// and `api://` or `https://` on a verified domain or one of its subdomains. Any other
    /// GUID in the host — another application's appId, another tenant's id — is refused: that
    /// is how one owner could claim the audience of another application.
    pub fn parse(raw: &str, owner: &UriOwner<'_>) -> Result<Self, IdentifierUriError> {
        let url = url::Url::parse(raw).map_err(|_| IdentifierUriError::NotAbsolute(raw.into()))?;
        if url.query().is_some() || url.fragment().is_some() || raw.contains('*') {
            return Err(IdentifierUriError::QueryOrFragment(raw.into()));
        }
        let refused = || IdentifierUriError::NotOnVerifiedDomain(raw.into());
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        if host.is_empty() {
            return Err(refused());
        }
        let on_verified_domain = owner.verified_domains.iter().any(|d| {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            !d.is_empty() && (host == d || host.strip_suffix(&d).is_some_and(|p| p.ends_with('.')))
        });
        let path = url.path().trim_matches('/');
        let allowed = match url.scheme() {
            "api" => match agentid_claims::guid::parse(&host) {
                Some(g) if g == owner.app_id => true,
                Some(g) if g == owner.tenant_id => !path.is_empty(),
                Some(_) => false,
                None => {
                    on_verified_domain || agentid_claims::guid::parse(path) == Some(owner.app_id)
                }
            },
            "https" => on_verified_domain,
            _ => false,
        };
        if allowed {
            Ok(Self(raw.to_string()))
        } else {
            Err(refused())
        }
    }

    /// Every URI of a list, or the index and error of the first that is refused.
    pub fn parse_all(
        raw: &[String],
        owner: &UriOwner<'_>,
    ) -> Result<Vec<Self>, (usize, IdentifierUriError)> {
        raw.iter()
            .enumerate()
            .map(|(i, u)| Self::parse(u, owner).map_err(|e| (i, e)))
            .collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a redirect URI is registered: browser platforms (`web`, `spa`) or a public client
/// (`publicClient`: native and mobile apps, which may use their own URI schemes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectPlatform {
    Web,
    Spa,
    PublicClient,
}

impl RedirectPlatform {
    /// The Graph property the URI is registered under.
    pub fn property(self) -> &'static str {
        match self {
            RedirectPlatform::Web => "web",
            RedirectPlatform::Spa => "spa",
            RedirectPlatform::PublicClient => "publicClient",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("'{0}' is not an absolute URI")]
    NotAbsolute(String),
    #[error("'{0}' must not contain a fragment")]
    Fragment(String),
    #[error("'{0}' uses a scheme that can never be a redirect URI")]
    ForbiddenScheme(String),
    #[error("'{0}' must use https (http is allowed only for localhost and loopback addresses)")]
    InsecureHttp(String),
    #[error("'{0}' uses a custom scheme, which only public clients may register")]
    CustomSchemeNeedsPublicClient(String),
}

/// Schemes that run code or read local data when navigated to, and special schemes that are
/// not an application's own: never a place to send an authorization code.
const FORBIDDEN_SCHEMES: [&str; 10] = [
    "javascript",
    "data",
    "file",
    "vbscript",
    "about",
    "blob",
    "filesystem",
    "ftp",
    "ws",
    "wss",
];

/// A redirect URI a browser may be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri(String);

impl RedirectUri {
    /// `https://…` anywhere; `http://` only on `localhost` and loopback addresses; a custom
    /// scheme (`msal{appId}://auth`, `com.example.app:/cb`) only for public clients; never
    /// `javascript:`, `data:`, `file:`, `vbscript:` and the like; never a fragment
    /// (RFC 6749 §3.1.2).
    pub fn parse(raw: &str, platform: RedirectPlatform) -> Result<Self, RedirectUriError> {
        let url =
            url::Url::parse(raw.trim()).map_err(|_| RedirectUriError::NotAbsolute(raw.into()))?;
        if url.fragment().is_some() {
            return Err(RedirectUriError::Fragment(raw.into()));
        }
        let scheme = url.scheme();
        if FORBIDDEN_SCHEMES.contains(&scheme) {
            return Err(RedirectUriError::ForbiddenScheme(raw.into()));
        }
        match scheme {
            "https" => {}
            "http" if is_loopback_host(&url) => {}
            "http" => return Err(RedirectUriError::InsecureHttp(raw.into())),
            _ if platform == RedirectPlatform::PublicClient => {}
            _ => return Err(RedirectUriError::CustomSchemeNeedsPublicClient(raw.into())),
        }
        Ok(Self(raw.to_string()))
    }

    /// Every URI of a list, or the index and error of the first that is refused.
    pub fn parse_all(
        raw: &[String],
        platform: RedirectPlatform,
    ) -> Result<Vec<Self>, (usize, RedirectUriError)> {
        raw.iter()
            .enumerate()
            .map(|(i, u)| Self::parse(u, platform).map_err(|e| (i, e)))
            .collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "5e7d8166-7876-4755-a1a4-b476d4a344f6";
    const APP: &str = "ec791040-80f8-4129-bf34-96a0e0672c96";
    const OTHER_APP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";

    fn owner(domains: &[String]) -> UriOwner<'_> {
        UriOwner {
            tenant_id: TENANT.parse().unwrap(),
            app_id: APP.parse().unwrap(),
            verified_domains: domains,
        }
    }

    #[test]
    fn identifier_uris_follow_entra_patterns() {
        let domains = vec!["contoso.test".to_string()];
        let o = owner(&domains);
        for ok in [
            format!("api://{APP}"),
            format!("api://{}", APP.to_uppercase()),
            format!("api://{APP}/"),
            format!("api://{APP}/files"),
            format!("api://{TENANT}/productsapi"),
            format!("api://{TENANT}/{APP}"),
            format!("api://productapi/{APP}"),
            "api://contoso.test/productsapi".into(),
            "api://api.contoso.test".into(),
            "https://contoso.test/productsapi".into(),
            "https://product.contoso.test".into(),
            "https://product.CONTOSO.test/productsapi".into(),
        ] {
            assert!(IdentifierUri::parse(&ok, &o).is_ok(), "{ok}");
        }
        for bad in [
            format!("api://{OTHER_APP}"),
            format!("api://{OTHER_APP}/files"),
            format!("api://{TENANT}"),
            format!("api://productapi/{OTHER_APP}"),
            "api://productsapi".into(),
            "api://evilcontoso.test/x".into(),
            "https://evil.test/contoso.test".into(),
            "https://contoso.test.evil.test/".into(),
            "https://contoso.test@evil.test/".into(),
            "http://contoso.test/productsapi".into(),
            "urn:contoso:api".into(),
            "https://127.0.0.1/api".into(),
        ] {
            assert!(
                matches!(
                    IdentifierUri::parse(&bad, &o),
                    Err(IdentifierUriError::NotOnVerifiedDomain(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            IdentifierUri::parse("not a uri", &o),
            Err(IdentifierUriError::NotAbsolute(_))
        ));
        assert!(matches!(
            IdentifierUri::parse("https://contoso.test/x?y=1", &o),
            Err(IdentifierUriError::QueryOrFragment(_))
        ));
        let e = IdentifierUri::parse("https://evil.test", &o).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Values of identifierUris property must use a verified domain of the organization or its subdomain: 'https://evil.test'"
        );
    }

    #[test]
    fn redirect_uris_refuse_dangerous_schemes() {
        use RedirectPlatform::*;
        for (uri, platform) in [
            ("https://app.example.com/cb", Web),
            ("https://app.example.com/cb", Spa),
            ("http://localhost:8400/", Web),
            ("http://127.0.0.1/cb", PublicClient),
            ("http://[::1]:9/cb", Web),
            (
                "msal14d82eec-204b-4c2f-b7e8-296a70dab67e://auth",
                PublicClient,
            ),
            ("com.example.app:/oauth2redirect", PublicClient),
            (
                "https://login.microsoftonline.com/common/oauth2/nativeclient",
                PublicClient,
            ),
        ] {
            assert!(RedirectUri::parse(uri, platform).is_ok(), "{uri}");
        }
        for (uri, platform) in [
            ("javascript:alert(1)", PublicClient),
            ("JavaScript://%0aalert(1)", PublicClient),
            ("data:text/html,<script>alert(1)</script>", PublicClient),
            ("file:///etc/passwd", PublicClient),
            ("vbscript:msgbox", PublicClient),
            ("http://app.example.com/cb", Web),
            ("http://localhost.evil.test/cb", Web),
            ("http://127.0.0.1.evil.test/cb", PublicClient),
            ("myapp://cb", Web),
            ("myapp://cb", Spa),
            ("https://app.example.com/cb#x", Web),
            ("/relative", Web),
            ("", PublicClient),
        ] {
            assert!(RedirectUri::parse(uri, platform).is_err(), "{uri}");
        }
    }
}
