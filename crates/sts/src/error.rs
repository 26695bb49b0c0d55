//! Errors as Entra shapes them (docs/sts.md §10): `error`, `error_description` starting
//! `AADSTSnnnnn: `, `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`.

use axum::http::StatusCode;

/// A refusal at an OAuth endpoint. `description` is the text after `AADSTSnnnnn: ` and before
/// the trace suffix, which is added when the response is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: &'static str,
    pub code: u32,
    pub description: String,
    pub suberror: Option<&'static str>,
    /// Seconds for `Retry-After` (429 answers).
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} AADSTS{}: {}",
            self.error, self.code, self.description
        )
    }
}

impl std::error::Error for OAuthError {}

impl OAuthError {
    pub fn new(error: &'static str, code: u32, description: impl Into<String>) -> Self {
        Self {
            error,
            code,
            description: description.into(),
            suberror: None,
            retry_after: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.error {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "temporarily_unavailable" => StatusCode::TOO_MANY_REQUESTS,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    // ---- constructors, one per AADSTS code (docs/sts.md §10.2) ----

    pub fn server_error() -> Self {
        Self::new(
            "server_error",
            50000,
            "There was an error issuing a token or an issue with our sign-in service.",
        )
    }
    /// 429 with `Retry-After`: too many password checks in progress. MSAL and Azure Identity
    /// retry `temporarily_unavailable` after the header's delay.
    pub fn busy(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(
                "temporarily_unavailable",
                90055,
                "There are too many incoming requests. Retry after the delay in the Retry-After header.",
            )
        }
    }
    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            "invalid_request",
            9002313,
            format!(
                "Invalid request. Request is malformed or invalid. {}",
                detail.into()
            ),
        )
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        )
    }
    pub fn unknown_tenant(segment: &str) -> Self {
        Self::new(
            "invalid_tenant",
            90002,
            format!(
                "Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        )
    }
    pub fn unsupported_grant(grant: &str) -> Self {
        Self::new(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        )
    }
    pub fn unknown_client(id: &str, tenant: &str) -> Self {
        Self::new(
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        )
    }
    pub fn no_service_principal(app: &str) -> Self {
        Self::new(
            "unauthorized_client",
            7000229,
            format!("The client application {app} is missing service principal in the tenant."),
        )
    }
    pub fn disabled(app: &str, name: &str) -> Self {
        Self::new(
            "unauthorized_client",
            7000112,
            format!("Application '{app}'({name}) is disabled."),
        )
    }
    pub fn agent_protocol(detail: impl Into<String>) -> Self {
        Self::new("unauthorized_client", 82001, detail.into())
    }
    /// A client ID metadata document client (an https URL `client_id`, docs/sts.md §16.4) is
    /// bound only by its redirect URIs: it may use the authorization code and refresh-token
    /// grants, nothing else (RFC 6749 §5.2 `unauthorized_client`).
    pub fn document_client_grant(grant: &str) -> Self {
        Self::new(
            "unauthorized_client",
            82002,
            format!(
                "A client identified by a client ID metadata document may not use the '{grant}' grant: only authorization_code and refresh_token."
            ),
        )
    }
    pub fn public_client_credential() -> Self {
        Self::new(
            "invalid_client",
            700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
        )
    }
    pub fn no_credential() -> Self {
        Self::new(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    }
    pub fn bad_secret(app: &str) -> Self {
        Self::new(
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{app}'."
            ),
        )
    }
    pub fn secret_expired(app: &str) -> Self {
        Self::new(
            "invalid_client",
            7000222,
            format!(
                "The provided client secret keys for app '{app}' are expired. Create new keys for your app, or consider using certificate credentials for added security."
            ),
        )
    }
    pub fn unparseable_jwt(what: &str) -> Self {
        Self::new(
            "invalid_request",
            50027,
            format!("JWT token is invalid or malformed ({what})."),
        )
    }
    pub fn missing_claim(claim: &str) -> Self {
        Self::new(
            "invalid_request",
            90014,
            format!(
                "The required field '{claim}' is missing from the credential. Ensure that you have all the necessary parameters for the login request."
            ),
        )
    }
    pub fn assertion_invalid(reason: &str) -> Self {
        Self::new(
            "invalid_client",
            700027,
            format!("Client assertion failed signature validation. Reason: {reason}."),
        )
    }
    pub fn assertion_key_not_found(id: &str) -> Self {
        Self::new(
            "invalid_client",
            7000272,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{id}']"
            ),
        )
    }
    pub fn assertion_subject(client: &str) -> Self {
        Self::new(
            "invalid_client",
            700021,
            format!(
                "Client assertion application identifier doesn't match 'client_id' parameter. The 'iss' and 'sub' claims must equal '{client}'."
            ),
        )
    }
    pub fn assertion_time() -> Self {
        Self::new(
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        )
    }
    pub fn own_token_as_federated() -> Self {
        Self::new(
            "invalid_client",
            700222,
            "AAD-issued tokens may not be used for federated identity flows.",
        )
    }
    pub fn fic_issuer(iss: &str) -> Self {
        Self::new(
            "invalid_client",
            700211,
            format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
            ),
        )
    }
    pub fn fic_subject(sub: &str) -> Self {
        Self::new(
            "invalid_client",
            700213,
            format!(
                "No matching federated identity record found for presented assertion subject '{sub}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
            ),
        )
    }
    pub fn fic_audience(iss: &str, sub: &str, aud: &str) -> Self {
        Self::new(
            "invalid_client",
            70021,
            format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{aud}'."
            ),
        )
    }
    pub fn invalid_scope(detail: impl Into<String>) -> Self {
        Self::new(
            "invalid_scope",
            70011,
            format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. {}",
                detail.into()
            ),
        )
    }
    pub fn scope_needs_default(scope: &str) -> Self {
        Self::new(
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        )
    }
    pub fn unknown_resource(identifier: &str, tenant: &str) -> Self {
        Self::new(
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {identifier} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        )
    }
    pub fn unknown_scope_value(client: &str, value: &str, resource: &str) -> Self {
        Self::new(
            "invalid_scope",
            650053,
            format!(
                "The application '{client}' asked for scope '{value}' that doesn't exist on the resource '{resource}'. Contact the app vendor."
            ),
        )
    }
    pub fn consent_required(client: &str, name: &str) -> Self {
        Self {
            suberror: Some("consent_required"),
            ..Self::new(
                "invalid_grant",
                65001,
                format!(
                    "The user or administrator has not consented to use the application with ID '{client}' named '{name}'. Send an interactive authorization request for this user and resource."
                ),
            )
        }
    }
    pub fn assertion_signature() -> Self {
        Self::new(
            "invalid_grant",
            50013,
            "Assertion failed signature validation.",
        )
    }
    pub fn assertion_not_user_token(detail: &str) -> Self {
        Self::new(
            "invalid_grant",
            50013,
            format!("Assertion is invalid: {detail}."),
        )
    }
    pub fn assertion_expired() -> Self {
        Self::new(
            "invalid_grant",
            500133,
            "Assertion is not within its valid time range. Ensure that the access token is not expired before using it for user assertion, or request a new token.",
        )
    }
    pub fn assertion_audience(aud: &str, expected: &str) -> Self {
        Self::new(
            "invalid_grant",
            500131,
            format!(
                "Assertion audience does not match the Client app presenting the assertion. The audience in the assertion was '{aud}' and the expected audience is '{expected}' or one of the Application Id URIs of this web API."
            ),
        )
    }
    pub fn user_not_found() -> Self {
        Self::new(
            "invalid_grant",
            50034,
            "The user account does not exist in the directory.",
        )
    }
    pub fn user_disabled() -> Self {
        Self::new("invalid_grant", 50057, "The user account is disabled.")
    }
    pub fn sessions_revoked() -> Self {
        Self::new(
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
        )
    }
    pub fn bad_refresh_token() -> Self {
        Self::new(
            "invalid_grant",
            70000,
            "The provided value for the 'refresh_token' is not valid.",
        )
    }
    pub fn refresh_inactive() -> Self {
        Self::new(
            "invalid_grant",
            700082,
            "The refresh token has expired due to inactivity. The token was issued on a date and was inactive for 90 days.",
        )
    }
    pub fn bad_credentials() -> Self {
        Self::new(
            "invalid_grant",
            50126,
            "Error validating credentials due to invalid username or password.",
        )
    }
    pub fn account_locked() -> Self {
        Self::new(
            "invalid_grant",
            50053,
            "You've tried to sign in too many times with an incorrect user ID or password.",
        )
    }
    pub fn invalid_instance() -> Self {
        Self::new("invalid_instance", 50049, "Unknown or invalid instance.")
    }
    pub fn bad_verification_code() -> Self {
        Self::new("bad_verification_code", 70018, "Invalid verification code.")
    }
    pub fn authorization_pending() -> Self {
        Self::new(
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        )
    }
    pub fn slow_down() -> Self {
        Self::new(
            "slow_down",
            70016,
            "OAuth 2.0 device flow error. Polling too fast: wait 'interval' seconds between polls.",
        )
    }
    pub fn authorization_declined() -> Self {
        Self::new(
            "authorization_declined",
            65004,
            "User declined to consent to access the app.",
        )
    }
    pub fn device_code_expired() -> Self {
        Self::new(
            "expired_token",
            70019,
            "Verification code expired. Have the user retry the sign-in.",
        )
    }
    pub fn device_code_used() -> Self {
        Self::new(
            "invalid_grant",
            70000,
            "The provided device code was already redeemed or belongs to another application.",
        )
    }
    pub fn code_invalid() -> Self {
        Self::new(
            "invalid_grant",
            70000,
            "The provided authorization code is not valid.",
        )
    }
    pub fn code_redeemed() -> Self {
        Self::new(
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        )
    }
    pub fn code_expired() -> Self {
        Self::new(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        )
    }
    pub fn redirect_mismatch() -> Self {
        Self::new(
            "invalid_request",
            50011,
            "The redirect URI in the request does not match the one used to obtain the authorization code.",
        )
    }
    pub fn pkce_mismatch() -> Self {
        Self::new(
            "invalid_grant",
            50148,
            "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
        )
    }
    pub fn user_id_not_guid() -> Self {
        Self::new(
            "invalid_request",
            50000,
            "The 'user_id' parameter must be the object id (GUID) of the user.",
        )
    }
}

pub type OAuthResult<T> = Result<T, OAuthError>;
