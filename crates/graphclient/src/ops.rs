//! The directory operations: the Graph calls of the guide's scripts, each once.

use crate::{GraphClient, GraphError, Result, s};
use serde_json::{Value, json};

/// The audience of Kubernetes service-account tokens exchanged for Entra tokens.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// A blueprint as created: its application and principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blueprint {
    pub app_id: String,
    pub object_id: String,
    pub principal_id: String,
}

/// A federated identity credential as the directory stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fic {
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

impl Fic {
    fn from_json(f: &Value) -> Fic {
        Fic {
            id: s(f, "id"),
            name: s(f, "name"),
            issuer: s(f, "issuer"),
            subject: s(f, "subject"),
            audiences: f["audiences"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// `system:serviceaccount:NS:NAME`, the subject of a Kubernetes service account's tokens.
pub fn service_account_subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// `NS/NAME` (the CLI's shortcut) as a subject.
pub fn subject_of(service_account: &str) -> Result<String> {
    let (ns, name) = service_account
        .split_once('/')
        .ok_or_else(|| GraphError::Invalid("--service-account is NAMESPACE/NAME".into()))?;
    Ok(service_account_subject(ns, name))
}

/// A credential name derived from its subject (Graph names allow `[A-Za-z0-9-_]`).
pub fn fic_name(subject: &str) -> String {
    subject
        .trim_start_matches("system:serviceaccount:")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Only GUIDs go into `$filter` strings (no quoting games with attacker-chosen text).
fn guid(v: &str, what: &str) -> Result<String> {
    uuid::Uuid::parse_str(v)
        .map(|u| u.to_string())
        .map_err(|_| GraphError::Invalid(format!("{what} {v:?} is not a GUID")))
}

impl GraphClient {
    fn user_bind(&self, id: &str) -> String {
        format!("{}/v1.0/users/{id}", self.graph)
    }

    pub async fn application_by_app_id(&self, token: &str, app_id: &str) -> Result<Value> {
        let app_id = guid(app_id, "appId")?;
        let r = self
            .graph(
                token,
                "GET",
                &format!("/beta/applications?$filter=appId eq '{app_id}'"),
                None,
            )
            .await?;
        r["value"]
            .get(0)
            .cloned()
            .ok_or_else(|| GraphError::NotFound(format!("no application with appId {app_id}")))
    }

    pub async fn service_principal_by_app_id(&self, token: &str, app_id: &str) -> Result<Value> {
        let app_id = guid(app_id, "appId")?;
        let r = self
            .graph(
                token,
                "GET",
                &format!("/v1.0/servicePrincipals?$filter=appId eq '{app_id}'"),
                None,
            )
            .await?;
        r["value"].get(0).cloned().ok_or_else(|| {
            GraphError::NotFound(format!("no service principal with appId {app_id}"))
        })
    }

    /// The signed-in user's object id.
    pub async fn me(&self, token: &str) -> Result<String> {
        Ok(s(&self.graph(token, "GET", "/v1.0/me", None).await?, "id"))
    }

    /// A user's object id by UPN or id.
    pub async fn user_id(&self, token: &str, upn: &str) -> Result<String> {
        let upn: String = upn
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "@.-_".contains(*c))
            .collect();
        Ok(s(
            &self
                .graph(token, "GET", &format!("/v1.0/users/{upn}"), None)
                .await?,
            "id",
        ))
    }

    /// Application + principal + exposed `access_as_user`, sponsored and owned by the given users.
    pub async fn create_blueprint(
        &self,
        token: &str,
        name: &str,
        sponsors: &[String],
        owners: &[String],
    ) -> Result<Blueprint> {
        let sponsors: Vec<String> = sponsors.iter().map(|u| self.user_bind(u)).collect();
        let owners: Vec<String> = owners.iter().map(|u| self.user_bind(u)).collect();
        let bp = self
            .graph(token, "POST", "/beta/applications", Some(json!({"@odata.type": "Microsoft.Graph.AgentIdentityBlueprint", "displayName": name, "sponsors@odata.bind": sponsors, "owners@odata.bind": owners})))
            .await?;
        let (obj, app_id) = (s(&bp, "id"), s(&bp, "appId"));
        let sp = self
            .graph(
                token,
                "POST",
                "/beta/serviceprincipals/graph.agentIdentityBlueprintPrincipal",
                Some(json!({"appId": app_id})),
            )
            .await?;
        self.graph(
            token,
            "PATCH",
            &format!("/beta/applications/{obj}"),
            Some(json!({"identifierUris": [format!("api://{app_id}")], "api": {"oauth2PermissionScopes": [{"id": uuid::Uuid::new_v4(), "value": "access_as_user", "type": "User", "isEnabled": true,
                "adminConsentDisplayName": format!("Access {name}"), "adminConsentDescription": format!("Lets agents of {name} act for the signed-in user."),
                "userConsentDisplayName": format!("Access {name}"), "userConsentDescription": format!("Lets agents of {name} act for you.")}]}})),
        )
        .await?;
        Ok(Blueprint {
            app_id,
            object_id: obj,
            principal_id: s(&sp, "id"),
        })
    }

    /// Adds a client secret; returns its text (shown once).
    pub async fn add_password(
        &self,
        token: &str,
        object_id: &str,
        display: &str,
    ) -> Result<String> {
        let p = self
            .graph(
                token,
                "POST",
                &format!("/beta/applications/{object_id}/addPassword"),
                Some(json!({"passwordCredential": {"displayName": display}})),
            )
            .await?;
        Ok(s(&p, "secretText"))
    }

    pub async fn delete_application(&self, token: &str, object_id: &str) -> Result<()> {
        self.graph(
            token,
            "DELETE",
            &format!("/beta/applications/{object_id}"),
            None,
        )
        .await
        .map(drop)
    }

    pub async fn add_fic(
        &self,
        token: &str,
        object_id: &str,
        name: &str,
        issuer: &str,
        subject: &str,
        audience: &str,
    ) -> Result<Fic> {
        let f = self
            .graph(token, "POST", &format!("/beta/applications/{object_id}/federatedIdentityCredentials"), Some(json!({"name": name, "issuer": issuer, "subject": subject, "audiences": [audience]})))
            .await?;
        Ok(Fic::from_json(&f))
    }

    pub async fn list_fics(&self, token: &str, object_id: &str) -> Result<Vec<Fic>> {
        Ok(self
            .list_fics_json(token, object_id)
            .await?
            .iter()
            .map(Fic::from_json)
            .collect())
    }

    pub async fn list_fics_json(&self, token: &str, object_id: &str) -> Result<Vec<Value>> {
        let r = self
            .graph(
                token,
                "GET",
                &format!("/beta/applications/{object_id}/federatedIdentityCredentials"),
                None,
            )
            .await?;
        Ok(r["value"].as_array().cloned().unwrap_or_default())
    }

    /// Deletes a credential by name or id.
    pub async fn delete_fic(&self, token: &str, object_id: &str, name: &str) -> Result<()> {
        self.graph(
            token,
            "DELETE",
            &format!("/beta/applications/{object_id}/federatedIdentityCredentials/{name}"),
            None,
        )
        .await
        .map(drop)
    }

    /// The blueprint's own app-only Graph token (client credentials with its secret).
    pub async fn blueprint_token(&self, blueprint: &str, secret: &str) -> Result<String> {
        self.access_token(&[
            ("grant_type", "client_credentials"),
            ("client_id", blueprint),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await
    }

    /// Creates an agent identity with its blueprint's token; returns the principal.
    pub async fn create_agent(
        &self,
        blueprint_token: &str,
        name: &str,
        blueprint: &str,
        sponsors: &[String],
    ) -> Result<Value> {
        let sponsors: Vec<String> = sponsors.iter().map(|u| self.user_bind(u)).collect();
        self.graph(
            blueprint_token,
            "POST",
            "/beta/serviceprincipals/Microsoft.Graph.AgentIdentity",
            Some(json!({"displayName": name, "agentIdentityBlueprintId": blueprint, "sponsors@odata.bind": sponsors})),
        )
        .await
    }

    /// An agent identity by id, or None when the directory no longer has it.
    pub async fn agent(&self, token: &str, id: &str) -> Result<Option<Value>> {
        let id = guid(id, "agent id")?;
        match self
            .graph(token, "GET", &format!("/beta/servicePrincipals/{id}"), None)
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn delete_agent(&self, blueprint_token: &str, id: &str) -> Result<()> {
        self.graph(
            blueprint_token,
            "DELETE",
            &format!("/beta/serviceprincipals/{id}"),
            None,
        )
        .await
        .map(drop)
    }

    /// `RESOURCE/scope1 scope2 …` or bare Graph scopes: grants (merging into an existing grant)
    /// for all users.
    pub async fn grant(&self, admin: &str, client_app_id: &str, spec: &str) -> Result<Value> {
        let mut resource = "https://graph.microsoft.com".to_string();
        let mut scopes = Vec::new();
        for t in spec.split_whitespace() {
            match t.rfind('/') {
                Some(i) if t.contains("://") => {
                    resource = t[..i].to_string();
                    scopes.push(t[i + 1..].to_string());
                }
                _ => scopes.push(t.to_string()),
            }
        }
        self.consent_grant(admin, client_app_id, &resource, &scopes.join(" "))
            .await
    }

    /// The principal of a resource: an appId, `api://APPID`, or a well-known URI.
    pub async fn resource_sp(&self, token: &str, resource: &str) -> Result<Value> {
        if uuid::Uuid::parse_str(resource).is_ok() {
            return self.service_principal_by_app_id(token, resource).await;
        }
        let well_known = match resource.trim_end_matches('/') {
            "https://graph.microsoft.com" => Some(agentid_claims::wellknown::GRAPH_APP_ID),
            "https://cognitiveservices.azure.com" => {
                Some(agentid_claims::wellknown::COGNITIVE_SERVICES_APP_ID)
            }
            _ => None,
        };
        if let Some(id) = well_known {
            return self.service_principal_by_app_id(token, id).await;
        }
        let app_id = resource
            .strip_prefix("api://")
            .filter(|r| uuid::Uuid::parse_str(r).is_ok())
            .ok_or_else(|| {
                GraphError::Invalid(
                    "--resource is an appId, api://APPID or a well-known URI".into(),
                )
            })?;
        self.service_principal_by_app_id(token, app_id).await
    }

    /// Grants delegated `scopes` of `resource` to `client` for all users, merging into an
    /// existing grant. Returns `{id, scope, merged}`.
    pub async fn consent_grant(
        &self,
        admin: &str,
        client: &str,
        resource: &str,
        scopes: &str,
    ) -> Result<Value> {
        let client_sp = self.service_principal_by_app_id(admin, client).await?;
        let res = self.resource_sp(admin, resource).await?;
        let existing = self
            .graph(admin, "GET", &format!("/v1.0/oauth2PermissionGrants?$filter=clientId eq '{}' and resourceId eq '{}' and consentType eq 'AllPrincipals'", s(&client_sp, "id"), s(&res, "id")), None)
            .await?;
        if let Some(g) = existing["value"].get(0) {
            let mut all: Vec<String> = s(g, "scope")
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect();
            for sc in scopes.split(' ').filter(|x| !x.is_empty()) {
                if !all.iter().any(|x| x.eq_ignore_ascii_case(sc)) {
                    all.push(sc.to_string());
                }
            }
            self.graph(
                admin,
                "PATCH",
                &format!("/v1.0/oauth2PermissionGrants/{}", s(g, "id")),
                Some(json!({"scope": all.join(" ")})),
            )
            .await?;
            return Ok(json!({"id": s(g, "id"), "scope": all.join(" "), "merged": true}));
        }
        let g = self
            .graph(admin, "POST", "/v1.0/oauth2PermissionGrants", Some(json!({"clientId": s(&client_sp, "id"), "consentType": "AllPrincipals", "resourceId": s(&res, "id"), "scope": scopes})))
            .await?;
        Ok(json!({"id": s(&g, "id"), "scope": s(&g, "scope"), "merged": false}))
    }

    /// The delegated grants of a client (by appId), or all grants.
    pub async fn grants(&self, token: &str, client: Option<&str>) -> Result<Vec<Value>> {
        let path = match client {
            Some(c) => format!(
                "/v1.0/oauth2PermissionGrants?$filter=clientId eq '{}'",
                s(&self.service_principal_by_app_id(token, c).await?, "id")
            ),
            None => "/v1.0/oauth2PermissionGrants".to_string(),
        };
        let r = self.graph(token, "GET", &path, None).await?;
        Ok(r["value"].as_array().cloned().unwrap_or_default())
    }

    /// agentid only (`/agentid/v1/trustedIssuers`, docs/directory.md §5.6): registers `issuer` as
    /// a trusted issuer of federated assertions with a stored JWKS (`jwks` Some) or discovery
    /// (`jwks` None, with the CA of its endpoints). Creates the record or updates it in place.
    pub async fn put_trusted_issuer(
        &self,
        token: &str,
        issuer: &str,
        jwks: Option<&Value>,
        ca_bundle: Option<&str>,
        description: &str,
    ) -> Result<Value> {
        let list = self
            .graph(token, "GET", "/agentid/v1/trustedIssuers", None)
            .await?;
        let existing = list["value"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["issuer"] == issuer).cloned());
        let fields = json!({"jwks": jwks, "caBundle": ca_bundle, "description": description});
        match existing {
            Some(t) => {
                if t["jwks"] == fields["jwks"] && t["caBundle"] == fields["caBundle"] {
                    return Ok(t);
                }
                self.graph(
                    token,
                    "PATCH",
                    &format!("/agentid/v1/trustedIssuers/{}", s(&t, "id")),
                    Some(fields),
                )
                .await?;
                Ok(t)
            }
            None => {
                let mut body = fields;
                body["issuer"] = json!(issuer);
                self.graph(token, "POST", "/agentid/v1/trustedIssuers", Some(body))
                    .await
            }
        }
    }
}
