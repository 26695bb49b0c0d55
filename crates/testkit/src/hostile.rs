//! Hand-made tokens for the adversarial suites (RFC 8725, RFC 9700): any header and payload,
//! any signature bytes, so a test can present what no honest issuer would sign.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// `header.payload.signature` with the given JSON and raw signature bytes.
pub fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// An HS256 token whose MAC key is `key` (e.g. an issuer's public key in PEM or JWK form: the
/// classic key-confusion forgery).
pub fn hs256(header: &Value, claims: &Value, key: &[u8]) -> String {
    use hmac::Mac;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// Replaces the header of a signed token (the signature no longer matches it, which is the
/// point: the verifier must refuse before or at the signature check, never panic).
pub fn with_header(token: &str, header: &Value) -> String {
    let mut parts = token.splitn(3, '.');
    let (_, payload, sig) = (parts.next(), parts.next(), parts.next());
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        payload.unwrap_or(""),
        sig.unwrap_or("")
    )
}

/// The decoded header of `token` with `changes` merged in (a `null` removes a member).
pub fn header_with(token: &str, changes: &Value) -> Value {
    let mut h = Value::Object(crate::header(token));
    merge(&mut h, changes);
    h
}

/// The decoded payload of `token` with `changes` merged in (a `null` removes a member).
pub fn claims_with(token: &str, changes: &Value) -> Value {
    let mut c = Value::Object(crate::claims(token));
    merge(&mut c, changes);
    c
}

fn merge(base: &mut Value, changes: &Value) {
    if let (Value::Object(b), Value::Object(c)) = (base, changes) {
        for (k, v) in c {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Strings a hostile `kid` might carry: path traversal, SQL-ish, huge, control characters.
pub const INJECTED_KIDS: [&str; 6] = [
    "../../../../etc/passwd",
    "' OR '1'='1",
    "x\"; DROP TABLE signing_keys; --",
    "%2e%2e%2f%2e%2e%2fkeys",
    "\u{0000}\u{202e}kid",
    "https://attacker.example/jwks.json",
];

/// An attacker's web server: answers anything with a JWKS-looking body and counts the requests,
/// so a test can show that `jku`/`x5u` header URLs are never fetched.
pub struct Recorder {
    pub url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        use std::sync::atomic::Ordering;
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({"keys": []}))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Recorder {
            url,
            hits,
            _shutdown: tx,
        }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}
