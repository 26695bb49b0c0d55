//! Property tests of the tenant file loader (issue 10): arbitrary YAML, and random mutations
//! of the example tenant files, are parsed and applied to a real database. Nothing panics;
//! every refusal is a typed error that names the path of the offending key.

use agentid_directory::tenant_file::{TenantFile, TenantFileError};
use agentid_testkit::{Db, TestSts};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_yaml_ng::{Mapping, Value};

const EXAMPLES: [&str; 2] = [
    include_str!("../../../../examples/demo-tenant.yaml"),
    include_str!("../../../../examples/up-tenant.yaml"),
];

/// A refusal must say where: `Invalid { path }` (or `Read { path }` for a referenced file).
fn typed(e: &TenantFileError, input: &str) -> Result<(), TestCaseError> {
    match e {
        TenantFileError::Invalid { path, message } => {
            prop_assert!(!path.is_empty() && !message.is_empty(), "{e}\n{input}");
            Ok(())
        }
        TenantFileError::Read { path, .. } => {
            prop_assert!(!path.is_empty(), "{e}");
            Ok(())
        }
        TenantFileError::Directory(d) => Err(TestCaseError::fail(format!(
            "a refusal that names no path: {d}\n--- input ---\n{input}"
        ))),
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        prop::sample::select(vec![
            "",
            " ",
            "{appId}",
            "{tenantId}",
            "api://{appId}",
            "api://x",
            "https://contoso.test/api",
            "javascript:alert(1)",
            "myapp://cb",
            "00000000-0000-0000-0000-000000000000",
            "5e7d8166-7876-4755-a1a4-b476d4a344f6",
            "85075aa5-1d73-42de-812a-95348218e4b2",
            "alice",
            "bob",
            "alice@contoso.test",
            "Global Administrator",
            "RS256",
            "ES256",
            "../../../../etc/passwd",
            "/dev/zero",
            "$argon2id$v=19$m=1048576,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            "https://kubernetes.default.svc",
            "system:serviceaccount:ns:sa",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        "\\PC{0,40}".prop_map(Value::String),
        (0usize..3000).prop_map(|n| Value::String("x".repeat(n))),
    ]
}

fn replacement() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec(("[a-zA-Z]{1,12}", inner), 0..4).prop_map(|kv| {
                let mut m = Mapping::new();
                for (k, v) in kv {
                    m.insert(Value::String(k), v);
                }
                Value::Mapping(m)
            }),
        ]
    })
}

#[derive(Debug, Clone)]
enum Op {
    Delete,
    Replace(Value),
    Duplicate,
    RenameKey(String),
}

/// Walks `choices` into `v` and applies `op` at the node reached.
fn mutate(v: &mut Value, choices: &[usize], op: &Op) {
    let (first, rest) = match choices.split_first() {
        Some(x) => x,
        None => {
            if let Op::Replace(r) = op {
                *v = r.clone();
            }
            return;
        }
    };
    let stop = rest.is_empty() || first % 4 == 0;
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            let i = first % m.len();
            let key = m.keys().nth(i).cloned().expect("index in range");
            if stop {
                match op {
                    Op::Delete => {
                        m.remove(&key);
                    }
                    Op::Replace(r) => {
                        m.insert(key, r.clone());
                    }
                    Op::Duplicate => {}
                    Op::RenameKey(k) => {
                        if let Some(val) = m.remove(&key) {
                            m.insert(Value::String(k.clone()), val);
                        }
                    }
                }
            } else if let Some(child) = m.get_mut(&key) {
                mutate(child, rest, op);
            }
        }
        Value::Sequence(s) if !s.is_empty() => {
            let i = first % s.len();
            if stop {
                match op {
                    Op::Delete => {
                        s.remove(i);
                    }
                    Op::Replace(r) => s[i] = r.clone(),
                    Op::Duplicate => {
                        let x = s[i].clone();
                        s.push(x);
                    }
                    Op::RenameKey(_) => {}
                }
            } else {
                mutate(&mut s[i], rest, op);
            }
        }
        other => {
            if let Op::Replace(r) = op {
                *other = r.clone();
            }
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Delete),
        6 => scalar().prop_map(Op::Replace),
        1 => replacement().prop_map(Op::Replace),
        2 => Just(Op::Duplicate),
        1 => "[a-zA-Z]{1,16}".prop_map(Op::RenameKey),
    ]
}

fn mutated_example() -> impl Strategy<Value = String> {
    (
        0..EXAMPLES.len(),
        prop::collection::vec((prop::collection::vec(any::<usize>(), 1..6), op()), 1..4),
    )
        .prop_map(|(which, mutations)| {
            let mut doc: Value =
                serde_yaml_ng::from_str(EXAMPLES[which]).expect("examples are YAML");
            for (choices, op) in &mutations {
                mutate(&mut doc, choices, op);
            }
            serde_yaml_ng::to_string(&doc).unwrap_or_default()
        })
}

fn arbitrary_yaml() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,200}",
        "([a-z]{1,8}: (\\[|\\]|\\{|\\}|-|[a-z0-9 ]{0,8}|\\n {0,4}){0,6}\\n?){0,8}",
        replacement().prop_map(|v| serde_yaml_ng::to_string(&v).unwrap_or_default()),
    ]
}

fn run(db: Db, cases: u32, strategy: impl Strategy<Value = String>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sts = rt.block_on(TestSts::start(db, EXAMPLES[0]));
    let store = sts.running.state.store.clone();
    let dir = sts.dir.path().to_path_buf();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |yaml| {
        let file = match TenantFile::parse(&yaml, &dir) {
            Ok(f) => f,
            Err(e) => return typed(&e, &yaml),
        };
        match rt.block_on(agentid_directory::tenant_file::apply(&store, &file)) {
            Ok(_) => Ok(()),
            Err(e) => typed(&e, &yaml),
        }
    });
    rt.block_on(sts.stop());
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn arbitrary_yaml_is_loaded_or_refused_with_a_path() {
    run(Db::Sqlite, 256, arbitrary_yaml());
}

#[test]
fn mutated_examples_apply_or_are_refused_with_a_path_sqlite() {
    run(Db::Sqlite, 256, mutated_example());
}

#[test]
fn mutated_examples_apply_or_are_refused_with_a_path_postgres() {
    run(Db::Postgres, 256, mutated_example());
}
