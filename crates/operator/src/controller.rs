//! The controllers (docs/operator.md §3): AgentBlueprint and AgentIdentity reconciled with the
//! directory — created, repaired when they drift, removed (or orphaned) with a finalizer — with
//! every change an Event on the resource and every failure a condition with the directory's
//! own error (AADSTS or Graph code), retried with backoff.

use crate::crd::{
    AgentBlueprint, AgentBlueprintStatus, AgentIdentity, AgentIdentityStatus, DeletionPolicy,
    FINALIZER, FicStatus, is_true, set_condition,
};
use crate::directory::{self, Directory, TokenCache};
use crate::{Config, Error, model};
use agentid_graphclient::ops::{TOKEN_EXCHANGE_AUDIENCE, fic_name, service_account_subject};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Ctx {
    pub kube: kube::Client,
    pub cfg: Arc<Config>,
    tokens: TokenCache,
    recorder: Recorder,
    /// Consecutive failures per resource (uid), for backoff; cleared on success.
    failures: Mutex<HashMap<String, u32>>,
}

impl Ctx {
    pub fn new(kube: kube::Client, cfg: Arc<Config>) -> Ctx {
        let recorder = Recorder::new(
            kube.clone(),
            Reporter {
                controller: "agentid-operator".into(),
                instance: Some(cfg.identity.clone()),
            },
        );
        Ctx {
            kube,
            cfg,
            tokens: TokenCache::default(),
            recorder,
            failures: Mutex::default(),
        }
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.kube.clone(), namespace)
    }

    async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot record an event");
        }
    }

    fn backoff(&self, uid: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() > 10_000 {
            f.clear();
        }
        let n = f.entry(uid.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        // 1 s, 2 s, 4 s … at most 5 minutes.
        Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300))
    }

    fn succeeded(&self, uid: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }
}

/// Runs both controllers until the future is dropped.
pub async fn run(ctx: Arc<Ctx>) {
    let (blueprints, agents): (Api<AgentBlueprint>, Api<AgentIdentity>) =
        match &ctx.cfg.watch_namespace {
            Some(ns) => (ctx.api(ns), ctx.api(ns)),
            None => (Api::all(ctx.kube.clone()), Api::all(ctx.kube.clone())),
        };
    let b = Controller::new(blueprints, watcher::Config::default())
        .run(reconcile_blueprint, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "blueprint reconcile");
            }
        });
    let a = Controller::new(agents, watcher::Config::default())
        .run(reconcile_agent, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "agent reconcile");
            }
        });
    tokio::join!(b, a);
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReconcileError(#[from] kube::runtime::finalizer::Error<Error>);

fn error_policy<K: Resource>(obj: Arc<K>, _e: &ReconcileError, ctx: Arc<Ctx>) -> Action {
    let uid = obj.meta().uid.clone().unwrap_or_default();
    Action::requeue(ctx.backoff(&uid))
}

fn ns_of<K: Resource>(obj: &K) -> String {
    obj.meta().namespace.clone().unwrap_or_default()
}

/// The condition reason of an error: the Graph code or OAuth error where there is one.
fn reason(e: &Error) -> String {
    match e {
        Error::Graph(agentid_graphclient::GraphError::Graph { code, .. }) => code.clone(),
        Error::Graph(agentid_graphclient::GraphError::OAuth { error, .. }) => error.clone(),
        Error::Graph(_) => "DirectoryUnreachable".into(),
        Error::Invalid(_) => "InvalidSpec".into(),
        Error::Missing(_) => "Missing".into(),
        Error::NotReady(_) => "Waiting".into(),
        _ => "Error".into(),
    }
}

// ---- AgentBlueprint ----

async fn reconcile_blueprint(
    bp: Arc<AgentBlueprint>,
    ctx: Arc<Ctx>,
) -> Result<Action, ReconcileError> {
    let api: Api<AgentBlueprint> = ctx.api(&ns_of(&*bp));
    let uid = bp.uid().unwrap_or_default();
    let r = finalizer(&api, FINALIZER, bp, |ev| async {
        match ev {
            Finalizer::Apply(bp) => apply_blueprint(&bp, &ctx, &api).await,
            Finalizer::Cleanup(bp) => cleanup_blueprint(&bp, &ctx).await,
        }
    })
    .await?;
    ctx.succeeded(&uid);
    Ok(r)
}

async fn patch_status<K>(api: &Api<K>, name: &str, status: serde_json::Value) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

async fn apply_blueprint(
    bp: &AgentBlueprint,
    ctx: &Ctx,
    api: &Api<AgentBlueprint>,
) -> Result<Action, Error> {
    let mut status = bp.status.clone().unwrap_or_default();
    let r = sync_blueprint(bp, ctx, api, &mut status).await;
    let generation = bp.metadata.generation;
    match &r {
        Ok(()) => {
            set_condition(
                &mut status.conditions,
                "Ready",
                true,
                "Synced",
                "",
                generation,
            );
            status.observed_generation = generation;
        }
        Err(e) => {
            let msg = e.to_string();
            if !is_true(&status.conditions, "DirectorySynced") || status.app_id.is_none() {
                set_condition(
                    &mut status.conditions,
                    "DirectorySynced",
                    false,
                    &reason(e),
                    &msg,
                    generation,
                );
            }
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                &reason(e),
                &msg,
                generation,
            );
            ctx.event(bp, true, "SyncFailed", msg).await;
        }
    }
    patch_status(
        api,
        &bp.name_any(),
        serde_json::to_value(&status).unwrap_or_default(),
    )
    .await?;
    match r {
        Ok(()) => Ok(Action::requeue(ctx.cfg.resync)),
        // An invalid spec waits for the next change; the rest is retried with backoff.
        Err(Error::Invalid(_)) => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}

async fn sync_blueprint(
    bp: &AgentBlueprint,
    ctx: &Ctx,
    api: &Api<AgentBlueprint>,
    status: &mut AgentBlueprintStatus,
) -> Result<(), Error> {
    let ns = ns_of(bp);
    let name = bp.name_any();
    let generation = bp.metadata.generation;
    let spec = model::blueprint(&name, &bp.spec)?;
    let dir = directory::open(&ctx.kube, &ns, &spec.directory).await?;
    let token = dir.admin_token(&ctx.kube, &ns, &ctx.tokens).await?;
    status.tenant_id = Some(dir.conn.tenant.clone());

    // The application: created once, recreated if it was deleted in the directory.
    let existing = match &status.app_id {
        Some(app_id) => match dir.client.application_by_app_id(&token, app_id).await {
            Ok(app) => Some(app),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let recreated = existing.is_none() && status.app_id.is_some();
    if existing.is_none() {
        let sponsors = users(&dir, &token, &spec.sponsors).await?;
        let owners = users(&dir, &token, &spec.owners).await?;
        let created = dir
            .client
            .create_blueprint(&token, &spec.display_name, &sponsors, &owners)
            .await?;
        status.app_id = Some(created.app_id.clone());
        status.object_id = Some(created.object_id.clone());
        status.principal_id = Some(created.principal_id.clone());
        status.federated_credentials.clear();
        // Recorded at once: a failure further on must not create a second blueprint.
        patch_status(
            api,
            &name,
            serde_json::to_value(&*status).unwrap_or_default(),
        )
        .await?;
        let what = if recreated { "Recreated" } else { "Created" };
        ctx.event(
            bp,
            recreated,
            what,
            format!(
                "{what} blueprint {} (appId {})",
                spec.display_name, created.app_id
            ),
        )
        .await;
    }
    set_condition(
        &mut status.conditions,
        "DirectorySynced",
        true,
        "Synced",
        "",
        generation,
    );
    let app_id = status.app_id.clone().unwrap_or_default();
    let object_id = status.object_id.clone().unwrap_or_default();

    // Its client secret, with which the operator acts as the blueprint (agent creation).
    let have = directory::secret_strings(&ctx.kube, &ns, &spec.secret_name).await?;
    let current = have
        .as_ref()
        .is_some_and(|(k, _)| k.get("clientId") == Some(&app_id) && k.contains_key("clientSecret"));
    if !current {
        let secret = dir
            .client
            .add_password(&token, &object_id, "agentid operator")
            .await?;
        write_blueprint_secret(ctx, bp, &spec.secret_name, &app_id, &secret).await?;
        ctx.event(
            bp,
            false,
            "CredentialIssued",
            format!(
                "Stored a client secret of the blueprint in Secret {}",
                spec.secret_name
            ),
        )
        .await;
    }

    // The cluster issuer, trusted; then one federated credential per service account.
    let federated = async {
        let cluster = directory::cluster_issuer(&ctx.kube).await?;
        directory::register_issuer(&dir, &token, &cluster, ctx.cfg.cluster_ca_pem.as_deref())
            .await?;
        status.issuer = Some(cluster.issuer.clone());
        let existing = dir.client.list_fics(&token, &object_id).await?;
        let mut mine = Vec::new();
        for sa in &spec.service_accounts {
            let subject = service_account_subject(&ns, sa);
            let fic = fic_name(&subject);
            let found = existing.iter().find(|f| f.name == fic);
            let right = found.is_some_and(|f| {
                f.issuer == cluster.issuer
                    && f.subject == subject
                    && f.audiences == [TOKEN_EXCHANGE_AUDIENCE]
            });
            let id = if right {
                found.map(|f| f.id.clone()).unwrap_or_default()
            } else {
                if let Some(f) = found {
                    dir.client.delete_fic(&token, &object_id, &f.id).await?;
                }
                let f = dir
                    .client
                    .add_fic(
                        &token,
                        &object_id,
                        &fic,
                        &cluster.issuer,
                        &subject,
                        TOKEN_EXCHANGE_AUDIENCE,
                    )
                    .await?;
                let (reason, warn) = if found.is_some() {
                    ("Repaired", true)
                } else {
                    ("Federated", false)
                };
                ctx.event(
                    bp,
                    warn,
                    reason,
                    format!(
                        "Federated credential {fic}: issuer {} subject {subject}",
                        cluster.issuer
                    ),
                )
                .await;
                f.id
            };
            mine.push(FicStatus {
                name: fic,
                id,
                subject,
            });
        }
        // Credentials the operator made for service accounts no longer listed.
        for old in &status.federated_credentials {
            if !mine.iter().any(|m| m.name == old.name)
                && existing.iter().any(|f| f.name == old.name)
            {
                dir.client.delete_fic(&token, &object_id, &old.name).await?;
                ctx.event(
                    bp,
                    false,
                    "Unfederated",
                    format!("Removed federated credential {}", old.name),
                )
                .await;
            }
        }
        status.federated_credentials = mine;
        for perm in &spec.inheritable_permissions {
            dir.client.grant(&token, &app_id, perm).await?;
        }
        Ok::<(), Error>(())
    }
    .await;
    match &federated {
        Ok(()) => set_condition(
            &mut status.conditions,
            "CredentialFederated",
            true,
            "Federated",
            "",
            generation,
        ),
        Err(e) => set_condition(
            &mut status.conditions,
            "CredentialFederated",
            false,
            &reason(e),
            &e.to_string(),
            generation,
        ),
    }
    federated
}

async fn users(dir: &Directory, token: &str, upns: &[String]) -> Result<Vec<String>, Error> {
    if upns.is_empty() {
        return Ok(vec![dir.client.me(token).await?]);
    }
    let mut ids = Vec::new();
    for u in upns {
        ids.push(dir.client.user_id(token, u).await?);
    }
    Ok(ids)
}

async fn write_blueprint_secret(
    ctx: &Ctx,
    bp: &AgentBlueprint,
    name: &str,
    app_id: &str,
    secret: &str,
) -> Result<(), Error> {
    let ns = ns_of(bp);
    let api: Api<Secret> = ctx.api(&ns);
    let data = BTreeMap::from([
        (
            "clientId".to_string(),
            ByteString(app_id.as_bytes().to_vec()),
        ),
        (
            "clientSecret".to_string(),
            ByteString(secret.as_bytes().to_vec()),
        ),
    ]);
    let s = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns),
            // Goes with the blueprint resource (garbage collection).
            owner_references: bp.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "agentid-operator".to_string(),
            )])),
            ..Default::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    match api.get_opt(name).await? {
        Some(_) => {
            api.replace(name, &PostParams::default(), &s).await?;
        }
        None => {
            api.create(&PostParams::default(), &s).await?;
        }
    }
    Ok(())
}

async fn cleanup_blueprint(bp: &AgentBlueprint, ctx: &Ctx) -> Result<Action, Error> {
    let Some(status) = &bp.status else {
        return Ok(Action::await_change());
    };
    let (Some(object_id), DeletionPolicy::Delete) = (&status.object_id, bp.spec.deletion_policy)
    else {
        ctx.event(
            bp,
            false,
            "Orphaned",
            "Left the blueprint in the directory (deletionPolicy Orphan)".into(),
        )
        .await;
        return Ok(Action::await_change());
    };
    let ns = ns_of(bp);
    let dir = directory::open(&ctx.kube, &ns, &bp.spec.directory_ref).await?;
    let token = dir.admin_token(&ctx.kube, &ns, &ctx.tokens).await?;
    match dir.client.delete_application(&token, object_id).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    ctx.event(
        bp,
        false,
        "Deleted",
        format!(
            "Deleted blueprint {} and its agent identities",
            status.app_id.clone().unwrap_or_default()
        ),
    )
    .await;
    Ok(Action::await_change())
}

// ---- AgentIdentity ----

async fn reconcile_agent(
    agent: Arc<AgentIdentity>,
    ctx: Arc<Ctx>,
) -> Result<Action, ReconcileError> {
    let api: Api<AgentIdentity> = ctx.api(&ns_of(&*agent));
    let uid = agent.uid().unwrap_or_default();
    let r = finalizer(&api, FINALIZER, agent, |ev| async {
        match ev {
            Finalizer::Apply(a) => apply_agent(&a, &ctx, &api).await,
            Finalizer::Cleanup(a) => cleanup_agent(&a, &ctx).await,
        }
    })
    .await?;
    ctx.succeeded(&uid);
    Ok(r)
}

/// The blueprint resource of an agent, Ready, with its directory and the blueprint's own token.
struct BlueprintAccess {
    bp: AgentBlueprint,
    app_id: String,
    dir: Directory,
    admin: String,
    bp_token: String,
}

async fn blueprint_access(ctx: &Ctx, ns: &str, name: &str) -> Result<BlueprintAccess, Error> {
    let bp = ctx
        .api::<AgentBlueprint>(ns)
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::Missing(format!("AgentBlueprint {ns}/{name}")))?;
    let app_id = bp
        .status
        .as_ref()
        .filter(|s| is_true(&s.conditions, "DirectorySynced"))
        .and_then(|s| s.app_id.clone())
        .ok_or_else(|| {
            Error::NotReady(format!(
                "AgentBlueprint {ns}/{name} is not in the directory yet"
            ))
        })?;
    let spec = model::blueprint(name, &bp.spec)?;
    let dir = directory::open(&ctx.kube, ns, &spec.directory).await?;
    let admin = dir.admin_token(&ctx.kube, ns, &ctx.tokens).await?;
    let (keys, _) = directory::secret_strings(&ctx.kube, ns, &spec.secret_name)
        .await?
        .ok_or_else(|| {
            Error::NotReady(format!("Secret {ns}/{} of the blueprint", spec.secret_name))
        })?;
    let secret = keys.get("clientSecret").ok_or_else(|| {
        Error::Missing(format!("key clientSecret of Secret {}", spec.secret_name))
    })?;
    let bp_token = dir.client.blueprint_token(&app_id, secret).await?;
    Ok(BlueprintAccess {
        bp,
        app_id,
        dir,
        admin,
        bp_token,
    })
}

async fn apply_agent(
    agent: &AgentIdentity,
    ctx: &Ctx,
    api: &Api<AgentIdentity>,
) -> Result<Action, Error> {
    let mut status = agent.status.clone().unwrap_or_default();
    let r = sync_agent(agent, ctx, api, &mut status).await;
    let generation = agent.metadata.generation;
    match &r {
        Ok(()) => {
            set_condition(
                &mut status.conditions,
                "Ready",
                true,
                "Synced",
                "",
                generation,
            );
            status.observed_generation = generation;
        }
        Err(e) => {
            let msg = e.to_string();
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                &reason(e),
                &msg,
                generation,
            );
            if !matches!(e, Error::NotReady(_)) {
                ctx.event(agent, true, "SyncFailed", msg).await;
            }
        }
    }
    patch_status(
        api,
        &agent.name_any(),
        serde_json::to_value(&status).unwrap_or_default(),
    )
    .await?;
    match r {
        Ok(()) => Ok(Action::requeue(ctx.cfg.resync)),
        Err(Error::Invalid(_)) => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}

async fn sync_agent(
    agent: &AgentIdentity,
    ctx: &Ctx,
    api: &Api<AgentIdentity>,
    status: &mut AgentIdentityStatus,
) -> Result<(), Error> {
    let ns = ns_of(agent);
    let name = agent.name_any();
    let generation = agent.metadata.generation;
    let spec = model::agent(&agent.spec)?;
    let access = blueprint_access(ctx, &ns, &spec.blueprint).await?;
    let dir = &access.dir;
    // A blueprint recreated in the directory has none of the old agents.
    let same_blueprint = status.blueprint_app_id.as_deref() == Some(access.app_id.as_str());
    let existing = match (&status.agent_id, same_blueprint) {
        (Some(id), true) => dir.client.agent(&access.admin, id).await?,
        _ => None,
    };
    if existing.is_none() {
        let recreated = status.agent_id.is_some();
        let sponsors = if spec.sponsors.is_empty() {
            users(dir, &access.admin, &access.bp.spec.sponsors).await?
        } else {
            users(dir, &access.admin, &spec.sponsors).await?
        };
        let created = dir
            .client
            .create_agent(
                &access.bp_token,
                &spec.display_name,
                &access.app_id,
                &sponsors,
            )
            .await?;
        let id = agentid_graphclient::s(&created, "id");
        status.agent_id = Some(id.clone());
        status.blueprint_app_id = Some(access.app_id.clone());
        status.grants.clear();
        patch_status(
            api,
            &name,
            serde_json::to_value(&*status).unwrap_or_default(),
        )
        .await?;
        let what = if recreated { "Recreated" } else { "Created" };
        ctx.event(
            agent,
            recreated,
            what,
            format!("{what} agent identity {} ({id})", spec.display_name),
        )
        .await;
    }
    set_condition(
        &mut status.conditions,
        "DirectorySynced",
        true,
        "Synced",
        "",
        generation,
    );
    let id = status.agent_id.clone().unwrap_or_default();
    let mut grants = Vec::new();
    for c in &spec.admin_consents {
        let g = dir.client.grant(&access.admin, &id, c).await?;
        let gid = agentid_graphclient::s(&g, "id");
        if !grants.contains(&gid) {
            grants.push(gid);
        }
    }
    if grants != status.grants {
        ctx.event(
            agent,
            false,
            "Consented",
            format!("Granted {} for all users", spec.admin_consents.join(" ")),
        )
        .await;
    }
    status.grants = grants;
    // The agent's credential is its blueprint's, federated for the pods' service accounts.
    let federated = is_true(
        &access
            .bp
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
        "CredentialFederated",
    );
    set_condition(
        &mut status.conditions,
        "CredentialFederated",
        federated,
        if federated {
            "Federated"
        } else {
            "BlueprintNotFederated"
        },
        "",
        generation,
    );
    Ok(())
}

async fn cleanup_agent(agent: &AgentIdentity, ctx: &Ctx) -> Result<Action, Error> {
    let Some(id) = agent.status.as_ref().and_then(|s| s.agent_id.clone()) else {
        return Ok(Action::await_change());
    };
    if agent.spec.deletion_policy == DeletionPolicy::Orphan {
        ctx.event(
            agent,
            false,
            "Orphaned",
            format!("Left agent identity {id} in the directory (deletionPolicy Orphan)"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let ns = ns_of(agent);
    match blueprint_access(ctx, &ns, &agent.spec.blueprint_ref).await {
        Ok(access) => match access.dir.client.delete_agent(&access.bp_token, &id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        },
        // The blueprint resource is gone: with Delete, its agents went with it in the directory.
        Err(Error::Missing(_)) => {}
        Err(e) => return Err(e),
    }
    ctx.event(
        agent,
        false,
        "Deleted",
        format!("Deleted agent identity {id}"),
    )
    .await;
    Ok(Action::await_change())
}
