//! The STS's key cache under unauthenticated input (issue 10, defect 4): a bearer's `tid` and
//! `kid` are read before its signature is checked, so random tenant ids must not grow the
//! cache and unknown key ids must not reload (and decrypt) a tenant's keys on every request.

use agentid_testkit::sts::Options;
use agentid_testkit::{Db, TestSts, both_backends};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const MAX_CACHED_TENANTS: u64 = 1_000;

async fn start(db: Db) -> TestSts {
    TestSts::start_with(
        db,
        DEMO,
        Options {
            tls: true,
            configure: Box::new(|s| {
                s.access_lifetime = agentid_sts::settings::AccessLifetime::Fixed(3600);
                s.key_cache.max_tenants = MAX_CACHED_TENANTS;
            }),
        },
    )
    .await
}

/// An unsigned token that names `tid` and `kid`, issued (it claims) by this STS.
fn forged(sts: &TestSts, tid: &str, kid: &str) -> String {
    let b = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let now = chrono::Utc::now().timestamp();
    format!(
        "{}.{}.{}",
        b(serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid})),
        b(
            serde_json::json!({"iss": format!("{}/{tid}/v2.0", sts.base()), "tid": tid,
            "aud": "https://graph.microsoft.com", "exp": now + 600, "iat": now})
        ),
        URL_SAFE_NO_PAD.encode([7u8; 256])
    )
}

both_backends!(
    random_tenant_ids_do_not_grow_the_cache,
    |db: Db| async move {
        let sts = start(db).await;
        let keys = &sts.running.state.keys;
        let now = chrono::Utc::now().timestamp();
        // Through Graph, as an attacker sends them.
        for _ in 0..200 {
            let tid = uuid::Uuid::new_v4().to_string();
            let r = sts
                .http
                .get(format!("{}/v1.0/me", sts.base()))
                .bearer_auth(forged(&sts, &tid, "kid"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        // And many more straight at the key ring.
        for _ in 0..10_000 {
            let tid = uuid::Uuid::new_v4();
            let found = keys
                .verifier(&tid, Some("kid"), now)
                .await
                .unwrap_or_default();
            assert!(found.is_empty());
        }
        let entries = keys.cache_entries().await;
        assert!(
            entries.tenant_keys <= 1 && entries.tenant_lookups <= MAX_CACHED_TENANTS,
            "10,200 random tenant ids left {entries:?} cache entries (bound {MAX_CACHED_TENANTS})"
        );
        // The real tenant still verifies.
        let tenant: uuid::Uuid = sts.tenant_id.parse().unwrap();
        assert!(!keys.verifier(&tenant, None, now).await.unwrap().is_empty());
        sts.stop().await;
    }
);

both_backends!(
    unknown_kids_do_not_reload_on_every_request,
    |db: Db| async move {
        let sts = start(db).await;
        let keys = &sts.running.state.keys;
        let tenant: uuid::Uuid = sts.tenant_id.parse().unwrap();
        let now = chrono::Utc::now().timestamp();
        // Warm: the tenant's keys are loaded.
        assert!(!keys.verifier(&tenant, None, now).await.unwrap().is_empty());
        let before = keys.key_loads();
        for _ in 0..200 {
            let kid = uuid::Uuid::new_v4().simple().to_string();
            let r = sts
                .http
                .get(format!("{}/v1.0/me", sts.base()))
                .bearer_auth(forged(&sts, &sts.tenant_id, &kid))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        let tasks: Vec<_> = (0..800)
            .map(|i| {
                let state = sts.running.state.clone();
                tokio::spawn(async move {
                    state
                        .keys
                        .verifier(&tenant, Some(&format!("unknown-{i}")), now)
                        .await
                        .map(|k| k.len())
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 0);
        }
        let loads = keys.key_loads() - before;
        assert!(
            loads <= 2,
            "1,000 unknown kids reloaded the tenant's keys {loads} times"
        );
        sts.stop().await;
    }
);
