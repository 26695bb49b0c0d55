//! The rows the console's templates print: plain text prepared by the views (docs/console.md §4).

pub struct BlueprintRow {
    pub name: String,
    pub app_id: String,
    pub agents: usize,
    pub created: String,
}

pub struct AgentRow {
    pub name: String,
    pub id: String,
    pub enabled: bool,
    pub sponsors: String,
}

pub struct FicRow {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audience: String,
    /// (namespace, service account) when the subject is a Kubernetes service account.
    pub k8s: Option<(String, String)>,
}

pub struct SecretRow {
    pub key_id: String,
    pub name: String,
    pub hint: String,
    pub expires: String,
}

pub struct BlueprintDetail {
    pub name: String,
    pub app_id: String,
    pub object_id: String,
    pub agents: Vec<AgentRow>,
    pub fics: Vec<FicRow>,
    pub secrets: Vec<SecretRow>,
    pub owners: String,
    pub sponsors: String,
}

pub struct ConsentRow {
    pub id: String,
    pub client: String,
    pub resource: String,
    pub scope: String,
    pub principal: String,
    pub given_by: String,
}

pub struct UserRow {
    pub id: String,
    pub upn: String,
    pub name: String,
    pub kind: &'static str,
    pub roles: String,
    pub enabled: bool,
    pub revoked: String,
}

pub struct AuditFilters {
    pub agent: String,
    pub user: String,
    pub blueprint: String,
    pub decision: String,
    pub since: String,
    pub decisions: Vec<(&'static str, &'static str)>,
    pub error: Option<String>,
}

pub struct EventRow {
    pub time: String,
    pub source: String,
    pub result: String,
    pub refused: bool,
    pub what: String,
    pub reason: String,
    /// Who acted, in the trail's wording ("user X via client Y", "agent A for user X").
    pub who: String,
    pub uti: Option<String>,
}

pub struct HopRow {
    pub kind: String,
    pub who: String,
    pub details: String,
}
