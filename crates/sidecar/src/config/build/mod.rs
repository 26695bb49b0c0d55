//! From sources to a validated [`Config`]: precedence, defaults, and every startup error of
//! docs/sidecar.md §12 (each naming its key). One file per part of the configuration; this one
//! reads the sources and puts the parts together, in the order their errors are reported.

mod apis;
mod authority;
mod credentials;
mod settings;
mod sources;

use super::raw::{AZURE_AD_KEYS, RawRoot};
use super::tree::Tree;
use super::*;

/// Startup warnings: (event name, message), logged once the logger is up.
type Warnings = Vec<(String, String)>;

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Reads and validates the configuration.
pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
    let tree = sources::tree(sources)?;
    let raw = sources::raw(&tree)?;
    let mut warnings: Warnings = tree
        .conflicts
        .iter()
        .map(|c| {
            (
                "config_conflict".to_string(),
                format!(
                    "{} is given both as a list and as a single value; the list is used",
                    c.key
                ),
            )
        })
        .collect();
    let mut ignored_keys = Vec::new();
    if let Some(node) = tree.get(&["AzureAd"]) {
        for k in node.keys() {
            if !AZURE_AD_KEYS.iter().any(|a| a.eq_ignore_ascii_case(k)) {
                ignored_keys.push(format!("AzureAd__{k}"));
            }
        }
    }
    build(sources, &tree, raw, &mut warnings, ignored_keys)
}

fn build(
    sources: &ConfigSources,
    tree: &Tree,
    raw: RawRoot,
    warnings: &mut Warnings,
    ignored_keys: Vec<String>,
) -> Result<Config, ConfigError> {
    let ad = raw.azure_ad;
    if ad.token_decryption_credentials.is_some() {
        return Err(ConfigError::TokenDecryption);
    }
    let sc = raw.sidecar;
    let allow_insecure_authority = sc.allow_insecure_authority.unwrap_or(false);
    let (instance, tenant_id) = authority::instance_and_tenant(
        ad.instance,
        ad.authority,
        ad.tenant_id,
        allow_insecure_authority,
    )?;
    let client_id = non_empty(ad.client_id).ok_or(ConfigError::Missing {
        key: "AzureAd__ClientId".into(),
    })?;

    let mut audiences: Vec<String> = non_empty(ad.audience).into_iter().collect();
    audiences.extend(ad.audiences.into_iter().filter_map(|a| non_empty(Some(a))));
    if audiences.is_empty() {
        audiences = vec![format!("api://{client_id}"), client_id.clone()];
    }
    let required_scopes = non_empty(ad.scopes).map(|raw| RequiredScopes {
        any_of: raw.split_whitespace().map(str::to_string).collect(),
        raw,
    });
    let valid_issuers = ad
        .valid_issuers
        .into_iter()
        .filter_map(|i| non_empty(Some(i)))
        .collect();

    let federated_file = sources.var("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from);
    let credentials =
        credentials::credentials(ad.client_credentials, federated_file.as_deref(), warnings)?;
    let apis = apis::apis(tree, raw.downstream_apis, warnings)?;
    let sidecar = settings::settings(
        sources,
        tree,
        sc,
        raw.kestrel,
        raw.logging,
        allow_insecure_authority,
        warnings,
    )?;
    Ok(Config {
        instance,
        tenant_id,
        client_id,
        audiences,
        required_scopes,
        valid_issuers,
        send_x5c: ad.send_x5c.unwrap_or(false),
        credentials,
        apis: Apis::new(apis),
        sidecar,
        warnings: std::mem::take(warnings),
        ignored_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AzureAd__Instance", "https://login.microsoftonline.com/"),
            ("AzureAd__TenantId", "t1"),
            ("AzureAd__ClientId", "c1"),
            ("AzureAd__ClientCredentials__0__SourceType", "ClientSecret"),
            ("AzureAd__ClientCredentials__0__ClientSecret", "s"),
            ("Sidecar__HealthListenUrl", "off"),
        ]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut v = base();
        v.extend_from_slice(extra);
        load(&ConfigSources::from_vars(&v))
    }

    #[test]
    fn defaults_and_both_scope_forms() {
        let c = with(&[
            (
                "DownstreamApis__graph__Scopes__0",
                "https://graph.microsoft.com/.default",
            ),
            ("DownstreamApis__graph__RequestAppToken", "TRUE"),
            ("DownstreamApis__mcp__Scopes", "a  b"),
        ])
        .unwrap();
        assert_eq!(c.audiences, vec!["api://c1", "c1"]);
        assert_eq!(
            c.apis.get("GRAPH").unwrap().1.scopes,
            vec!["https://graph.microsoft.com/.default"]
        );
        assert!(c.apis.get("graph").unwrap().1.request_app_token);
        assert_eq!(c.apis.get("mcp").unwrap().1.scopes, vec!["a", "b"]);
        assert_eq!(c.sidecar.listen.len(), 2);
        assert!(c.sidecar.health_listen.is_none());
        assert_eq!(c.sidecar.cache_max_entries, 4096);
        assert!(c.sidecar.allowed_agents.is_none());
    }

    #[test]
    fn unknown_keys_name_their_path() {
        let e = with(&[("DownstreamApis__graph__Scopse", "x")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "configuration key DownstreamApis__graph__Scopse: unknown key"
        );
        let e = with(&[("Sidecar__AllowRemoteCaller", "true")]).unwrap_err();
        assert!(e.to_string().contains("Sidecar__AllowRemoteCaller"), "{e}");
        let e = with(&[("Sidecar__AllowOverrides__Nope", "true")]).unwrap_err();
        assert!(
            e.to_string().contains("Sidecar__AllowOverrides__Nope"),
            "{e}"
        );
        let e = with(&[("Sidecar__AllowRemoteCallers", "yes")]).unwrap_err();
        assert!(e.to_string().contains("Sidecar__AllowRemoteCallers"), "{e}");
        // AzureAd keys of Microsoft.Identity.Web that do not apply are ignored.
        let c = with(&[("AzureAd__CallbackPath", "/signin-oidc")]).unwrap();
        assert_eq!(c.ignored_keys, vec!["AzureAd__CallbackPath"]);
    }

    #[test]
    fn startup_errors() {
        let e = with(&[("AzureAd__ClientCredentials__0__SourceType", "KeyVault")]).unwrap_err();
        assert!(
            matches!(e, ConfigError::UnsupportedSourceType { .. }),
            "{e}"
        );
        let e = with(&[
            ("AzureAd__ClientCredentials__1__SourceType", "Path"),
            (
                "AzureAd__ClientCredentials__1__CertificateDiskPath",
                "/c.pem",
            ),
            ("AzureAd__ClientCredentials__1__CertificatePassword", "pw"),
        ])
        .unwrap_err();
        assert!(matches!(e, ConfigError::CertificatePassword { .. }), "{e}");
        let e = with(&[("AzureAd__Instance", "http://login.example/")]).unwrap_err();
        assert!(e.to_string().contains("AzureAd__Instance"), "{e}");
        assert!(
            with(&[
                ("AzureAd__Instance", "http://127.0.0.1:9/"),
                ("Sidecar__AllowInsecureAuthority", "true")
            ])
            .is_ok()
        );
        let c = with(&[
            ("Sidecar__AllowedHosts__0", "Sidecar.Internal."),
            ("Sidecar__AllowedHosts__1", "*.agents.internal"),
        ])
        .unwrap();
        assert_eq!(
            c.sidecar.allowed_hosts,
            vec!["sidecar.internal", "*.agents.internal"]
        );
        for bad in ["*", "http://x", "x:5000", "a..b", "-a.b", ""] {
            if let Err(e) = with(&[("Sidecar__AllowedHosts__0", bad)]) {
                assert!(e.to_string().contains("Sidecar__AllowedHosts__0"), "{e}");
            } else {
                assert!(bad.is_empty(), "{bad}");
            }
        }
        let e = with(&[("Sidecar__AllowedAgentIdentities__0", "agent")]).unwrap_err();
        assert!(
            e.to_string().contains("Sidecar__AllowedAgentIdentities__0"),
            "{e}"
        );
        let e = with(&[("DownstreamApis__g__BaseUrl", "/relative")]).unwrap_err();
        assert!(e.to_string().contains("DownstreamApis__g__BaseUrl"), "{e}");
        let e = with(&[
            ("DownstreamApis__g__Scopes", "a"),
            ("DownstreamApis__G__BaseUrl", "https://x/"),
        ])
        .unwrap_err();
        assert!(matches!(e, ConfigError::ApiNameCollision { .. }), "{e}");
        let e =
            with(&[("AzureAd__TokenDecryptionCredentials__0__SourceType", "Path")]).unwrap_err();
        assert!(matches!(e, ConfigError::TokenDecryption), "{e}");
        let e = with(&[("Sidecar__ListenUrl", "https://127.0.0.1:1")]).unwrap_err();
        assert!(e.to_string().contains("Sidecar__ListenUrl"), "{e}");
        let e = load(&ConfigSources::from_vars(&[("AzureAd__TenantId", "t")])).unwrap_err();
        assert!(e.to_string().contains("AzureAd__ClientId"), "{e}");
    }

    #[test]
    fn workload_identity_variables_are_defaults() {
        let c = load(&ConfigSources::from_vars(&[
            ("AZURE_CLIENT_ID", "wi-client"),
            ("AZURE_TENANT_ID", "wi-tenant"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            ("AzureAd__TenantId", "explicit"),
            ("Sidecar__HealthListenUrl", ""),
        ]))
        .unwrap();
        assert_eq!(c.client_id, "wi-client");
        assert_eq!(c.tenant_id, "explicit");
        assert_eq!(c.instance, "https://login.microsoftonline.us/");
        assert_eq!(
            c.credentials,
            vec![CredentialConfig::AssertionFile {
                index: 0,
                path: "/var/run/secrets/azure/tokens/azure-identity-token".into()
            }]
        );
    }

    #[test]
    fn authority_form_and_file_precedence() {
        let dir = std::env::temp_dir().join(format!("sidecar-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("appsettings.json");
        std::fs::write(
            &file,
            r#"{"AzureAd":{"Authority":"https://sts.example/prefix/contoso/v2.0","ClientId":"file-client",
               "ClientCredentials":[{"SourceType":"SignedAssertionFilePath","SignedAssertionFileDiskPath":"/t"}]},
               "DownstreamApis":{"graph":{"Scopes":["x"],"RequestAppToken":true}},
               "Sidecar":{"AllowedAgentIdentities":["F3897825-FD03-45F5-90EB-FDBF26135650"],"HealthListenUrl":"off"},
               "Logging":{"LogLevel":{"Default":"Warning","Microsoft":"Error"}},"AllowedHosts":"*"}"#,
        )
        .unwrap();
        let mut s = ConfigSources::from_vars(&[("AzureAd__ClientId", "env-client")]);
        s.file = Some(file);
        let c = load(&s).unwrap();
        assert_eq!(c.instance, "https://sts.example/prefix/");
        assert_eq!(c.tenant_id, "contoso");
        assert_eq!(c.client_id, "env-client");
        assert_eq!(
            c.sidecar.allowed_agents,
            Some(vec!["f3897825-fd03-45f5-90eb-fdbf26135650".to_string()])
        );
        assert_eq!(c.sidecar.log_filter, "warn");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
