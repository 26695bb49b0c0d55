//! What a tenant file is checked for before the transaction opens: names and references,
//! roles, passwords, redirect URIs, federated credentials, and the certificates, key sets and
//! CA bundles it points to (read here, so no file is read while the database is locked).

use super::TenantFileError as E;
use super::spec::*;
use crate::applications::{
    RedirectPlatform, RedirectUri, check_permission_value, check_permission_values,
};
use crate::credentials::{
    FicError, MAX_FICS_PER_APPLICATION, NewCertificate, check_fic_audiences, check_fic_issuer,
    check_fic_name, check_fic_subject,
};
use crate::model::{AppRole, KNOWN_ROLES, PermissionScope};
use crate::secrets;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// What the checks read from disk, for the transaction.
pub(super) struct Checked {
    /// Certificates by `{handle}/{index}`.
    pub certs: HashMap<String, NewCertificate>,
    /// Per trusted issuer (in file order): the JWKS as JSON and the CA bundle.
    pub issuers: Vec<(Option<String>, Option<String>)>,
}

fn read_cert(file: &TenantFile, spec: &CertificateSpec, path: &str) -> Result<NewCertificate, E> {
    let pem_text = match (&spec.file, &spec.pem) {
        (Some(f), None) => {
            let p = file.resolve(f);
            std::fs::read_to_string(&p)
                .map_err(|e| E::invalid(path, format!("cannot read {}: {e}", p.display())))?
        }
        (None, Some(pem)) => pem.clone(),
        _ => return Err(E::invalid(path, "give exactly one of `file` or `pem`")),
    };
    NewCertificate::from_pem(&pem_text).map_err(|e| E::invalid(path, e.to_string()))
}

/// A federated credential, by the rules Graph applies (`credentials::check_fic_*`).
fn check_fic(f: &FicSpec, path: &str, http_ok: &HashSet<&str>) -> Result<(), E> {
    let at = |e: FicError| {
        E::invalid(
            format!("{path}.{}", e.property().unwrap_or("")),
            e.to_string(),
        )
    };
    check_fic_name(&f.name).map_err(at)?;
    check_fic_issuer(&f.issuer, http_ok.contains(f.issuer.as_str())).map_err(at)?;
    check_fic_subject(&f.subject).map_err(at)?;
    check_fic_audiences(&f.audiences).map_err(at)?;
    Ok(())
}

/// The scopes of a file application: each `User`-consentable, enabled, with a stable id.
pub(super) fn scopes_of(
    app_id: Uuid,
    values: &[String],
    path: &str,
) -> Result<Vec<PermissionScope>, E> {
    check_permission_values(values.iter().map(String::as_str))
        .map_err(|(i, e)| E::invalid(format!("{path}[{i}]"), e.to_string()))?;
    Ok(values
        .iter()
        .map(|v| PermissionScope {
            id: Uuid::new_v5(&app_id, format!("scope:{v}").as_bytes()),
            value: v.clone(),
            kind: "User".into(),
            is_enabled: true,
            admin_consent_display_name: Some(format!("Access {v}")),
            admin_consent_description: None,
            user_consent_display_name: Some(format!("Access {v}")),
            user_consent_description: None,
        })
        .collect())
}

/// The app roles of a file application: assignable to applications, with a stable id.
pub(super) fn roles_of(app_id: Uuid, values: &[String], path: &str) -> Result<Vec<AppRole>, E> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            check_permission_value(v)
                .map_err(|e| E::invalid(format!("{path}[{i}]"), e.to_string()))?;
            Ok(AppRole {
                id: Uuid::new_v5(&app_id, format!("role:{v}").as_bytes()),
                value: v.clone(),
                display_name: Some(v.clone()),
                description: None,
                allowed_member_types: vec!["Application".into()],
                is_enabled: true,
            })
        })
        .collect()
}

/// Everything that can be checked without the database.
pub(super) fn check(file: &TenantFile) -> Result<Checked, E> {
    let mut handles: HashMap<String, &'static str> = HashMap::new();
    let mut add_handle = |name: &'static str, h: &str, path: String| -> Result<(), E> {
        if handles.insert(h.to_string(), name).is_some() {
            return Err(E::invalid(path, format!("the name '{h}' is used twice")));
        }
        Ok(())
    };
    for (i, u) in file.users.iter().enumerate() {
        add_handle("user", &u.name, format!("users[{i}].name"))?;
        for (j, r) in u.roles.iter().enumerate() {
            if !KNOWN_ROLES.contains(&r.as_str()) {
                return Err(E::invalid(
                    format!("users[{i}].roles[{j}]"),
                    format!(
                        "unknown directory role '{r}' (known: {})",
                        KNOWN_ROLES.join(", ")
                    ),
                ));
            }
        }
        if u.password.is_some() && u.password_hash.is_some() {
            return Err(E::invalid(
                format!("users[{i}]"),
                "give `password` or `passwordHash`, not both",
            ));
        }
        if let Some(h) = &u.password_hash
            && !secrets::is_valid_password_hash(h)
        {
            return Err(E::invalid(
                format!("users[{i}].passwordHash"),
                "not an Argon2id PHC string",
            ));
        }
        if !u.upn.contains('@') {
            return Err(E::invalid(
                format!("users[{i}].upn"),
                "a user principal name looks like name@domain",
            ));
        }
    }
    for (i, a) in file.applications.iter().enumerate() {
        add_handle("application", &a.name, format!("applications[{i}].name"))?;
        // A tenant file keeps one list; a public client's may use custom schemes.
        let platform = if a.public_client {
            RedirectPlatform::PublicClient
        } else {
            RedirectPlatform::Web
        };
        RedirectUri::parse_all(&a.redirect_uris, platform).map_err(|(j, e)| {
            E::invalid(
                format!("applications[{i}].redirectUris[{j}]"),
                e.to_string(),
            )
        })?;
    }
    for (i, b) in file.blueprints.iter().enumerate() {
        add_handle("blueprint", &b.name, format!("blueprints[{i}].name"))?;
        for (j, a) in b.agents.iter().enumerate() {
            add_handle(
                "agent",
                &a.name,
                format!("blueprints[{i}].agents[{j}].name"),
            )?;
        }
    }
    let user_ref = |h: &str, path: String| -> Result<(), E> {
        if handles.get(h) == Some(&"user") {
            Ok(())
        } else {
            Err(E::invalid(
                path,
                format!("no user named '{h}' in this file"),
            ))
        }
    };
    for (i, b) in file.blueprints.iter().enumerate() {
        for (j, s) in b.sponsors.iter().enumerate() {
            user_ref(s, format!("blueprints[{i}].sponsors[{j}]"))?;
        }
        for (j, s) in b.owners.iter().enumerate() {
            user_ref(s, format!("blueprints[{i}].owners[{j}]"))?;
        }
        for (j, a) in b.agents.iter().enumerate() {
            for (k, s) in a.sponsors.iter().enumerate() {
                user_ref(s, format!("blueprints[{i}].agents[{j}].sponsors[{k}]"))?;
            }
        }
    }
    for (i, a) in file.applications.iter().enumerate() {
        for (j, s) in a.owners.iter().enumerate() {
            user_ref(s, format!("applications[{i}].owners[{j}]"))?;
        }
    }
    let http_ok: HashSet<&str> = file
        .trusted_issuers
        .iter()
        .filter(|t| t.allow_http)
        .map(|t| t.issuer.as_str())
        .collect();
    let fic_lists = file
        .applications
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("applications[{i}]"), &a.federated_credentials))
        .chain(
            file.blueprints
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("blueprints[{i}]"), &b.federated_credentials)),
        );
    for (owner, fics) in fic_lists {
        if fics.len() > MAX_FICS_PER_APPLICATION {
            return Err(E::invalid(
                format!("{owner}.federatedCredentials"),
                FicError::TooMany.to_string(),
            ));
        }
        for (j, f) in fics.iter().enumerate() {
            check_fic(f, &format!("{owner}.federatedCredentials[{j}]"), &http_ok)?;
        }
    }
    // Files read before the transaction opens.
    let mut certs: HashMap<String, NewCertificate> = HashMap::new();
    for (i, a) in file.applications.iter().enumerate() {
        for (j, c) in a.certificates.iter().enumerate() {
            let p = format!("applications[{i}].certificates[{j}]");
            certs.insert(format!("{}/{j}", a.name), read_cert(file, c, &p)?);
        }
    }
    for (i, b) in file.blueprints.iter().enumerate() {
        for (j, c) in b.certificates.iter().enumerate() {
            let p = format!("blueprints[{i}].certificates[{j}]");
            certs.insert(format!("{}/{j}", b.name), read_cert(file, c, &p)?);
        }
    }
    let mut issuer_jwks: Vec<(Option<String>, Option<String>)> = Vec::new();
    for (i, t) in file.trusted_issuers.iter().enumerate() {
        let path = format!("trustedIssuers[{i}]");
        crate::issuers::check_issuer(&t.issuer, t.allow_http)
            .map_err(|e| E::invalid(format!("{path}.issuer"), e.to_string()))?;
        let jwks = match &t.jwks {
            None if t.discovery => None,
            None => {
                return Err(E::invalid(
                    path,
                    "give `jwks` (file or inline) or `discovery: true`",
                ));
            }
            Some(_) if t.discovery => {
                return Err(E::invalid(
                    path,
                    "give `jwks` or `discovery: true`, not both",
                ));
            }
            Some(JwksSource {
                file: Some(f),
                inline: None,
            }) => {
                let p = file.resolve(f);
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    E::invalid(
                        format!("{path}.jwks.file"),
                        format!("cannot read {}: {e}", p.display()),
                    )
                })?;
                let set: agentid_claims::jwk::JwkSet =
                    serde_json::from_str(&text).map_err(|e| {
                        E::invalid(format!("{path}.jwks.file"), format!("not a JWKS: {e}"))
                    })?;
                Some(set)
            }
            Some(JwksSource {
                file: None,
                inline: Some(set),
            }) => Some(set.clone()),
            Some(_) => {
                return Err(E::invalid(
                    format!("{path}.jwks"),
                    "give exactly one of `file` or `inline`",
                ));
            }
        };
        if let Some(set) = &jwks {
            crate::issuers::check_jwks(set)
                .map_err(|e| E::invalid(format!("{path}.jwks"), e.to_string()))?;
        }
        let ca_bundle = match (&t.ca_bundle, &t.ca_file) {
            (Some(_), Some(_)) => {
                return Err(E::invalid(path, "give `caBundle` or `caFile`, not both"));
            }
            (Some(pem), None) => Some((pem.clone(), format!("{path}.caBundle"))),
            (None, Some(f)) => {
                let p = file.resolve(f);
                let pem = std::fs::read_to_string(&p).map_err(|e| {
                    E::invalid(
                        format!("{path}.caFile"),
                        format!("cannot read {}: {e}", p.display()),
                    )
                })?;
                Some((pem, format!("{path}.caFile")))
            }
            (None, None) => None,
        };
        if let Some((pem, key)) = &ca_bundle {
            crate::issuers::check_ca_bundle(pem)
                .map_err(|e| E::invalid(key.clone(), e.to_string()))?;
        }
        let jwks = jwks
            .map(|s| serde_json::to_string(&s))
            .transpose()
            .map_err(|e| E::invalid(format!("{path}.jwks"), e.to_string()))?;
        issuer_jwks.push((jwks, ca_bundle.map(|(pem, _)| pem)));
    }
    Ok(Checked {
        certs,
        issuers: issuer_jwks,
    })
}
