//! Who may change, delete or enter the objects of an admitted job.
//!
//! A job is its SparkApplication (or ScheduledSparkApplication) and its pods. After admission
//! they belong to the job's submitter. The requester of an UPDATE, DELETE or CONNECT is sorted
//! into roles (`Role`), each of which may take certain actions (`Action`) on each kind of job
//! object; a request is allowed when the union of the requester's roles covers every action it
//! takes. The table, documented in the README ("Who may change a job"):
//!
//! | role | SparkApplication, ScheduledSparkApplication | job pod |
//! |---|---|---|
//! | job administrator | everything | everything |
//! | submitter | spec, metadata, delete (not status) | spec, metadata, delete, exec/attach/port-forward, ephemeral containers (not status, not tokens) |
//! | spark-operator | metadata, status, delete | delete, and only of pods a SparkApplication controls |
//! | the job's own driver (its bound token) | — | metadata, delete of the job's executors |
//! | the kubelet of the pod's node | — | status, delete, tokens bound to the pod |
//! | Kubernetes controllers (garbage collector, namespace, pod GC, node lifecycle, scheduler) | metadata, status, delete | metadata, status, delete, evict |
//! | node drainers (`identity.evictors`: cluster administrators, the cluster autoscaler) | — | evict |
//!
//! Why these and no more (spark-operator and Spark sources, read for this table): the operator
//! writes SparkApplications only through the status subresource and deletes them (TTL, scheduled
//! runs); it never updates pods, and deletes driver pods *by the name in the application's
//! status*, so status belongs to the operator alone (a submitter who could write it could point
//! the operator at another job's pod) and its pod deletes are limited to application-controlled
//! pods. The driver creates, relabels (`spark-exec-inactive`, `spark-exec-id`, decommission
//! labels) and deletes its executors. The kubelet patches `pods/status` and makes the final
//! delete. `sparkward.io/` metadata and the hardened fields stay immutable for everyone (checked
//! separately); this module only answers "may this requester do this to this job's object".

use std::fmt;

/// What a request does to a job object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Changes `spec` (a pod's image, a SparkApplication's main file, executor count, ...).
    Spec,
    /// Changes labels, annotations, finalizers or ownerReferences.
    Metadata,
    /// Writes the status subresource.
    Status,
    /// Deletes the object.
    Delete,
    /// `pods/exec`, `pods/attach`, `pods/portforward` or a new ephemeral container.
    Enter,
    /// Mints a service-account token bound to the pod (TokenRequest): whoever holds it can
    /// create pods as the job's driver.
    Token,
    /// Evicts the pod (`pods/eviction`), which deletes it without a delete review.
    Evict,
}

impl Action {
    fn describe(self) -> &'static str {
        match self {
            Action::Spec => "change its spec",
            Action::Metadata => "change its labels, annotations, finalizers or owners",
            Action::Status => "write its status",
            Action::Delete => "delete it",
            Action::Enter => "enter it (exec, attach, port-forward or a debug container)",
            Action::Token => "mint a service-account token bound to it",
            Action::Evict => "evict it",
        }
    }
}

/// The kinds of job object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobObject {
    SparkApplication,
    ScheduledSparkApplication,
    /// A job pod; `executor` when it carries `spark-role=executor`, `app_controlled` when a
    /// SparkApplication is its controller owner (spark-operator's drivers).
    Pod {
        executor: bool,
        app_controlled: bool,
    },
}

impl JobObject {
    pub fn kind(self) -> &'static str {
        match self {
            JobObject::SparkApplication => "SparkApplication",
            JobObject::ScheduledSparkApplication => "ScheduledSparkApplication",
            JobObject::Pod { .. } => "Pod",
        }
    }
}

/// A role the requester holds toward one job object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The Kubernetes user the job was submitted as (`usernamePrefix` + subject).
    Submitter,
    /// A member of `identity.jobAdmins`.
    JobAdmin,
    /// A trusted spark-operator identity.
    Operator,
    /// The job's own driver pod (a service-account token bound to it).
    OwnDriver,
    /// The kubelet of the node the pod runs on.
    Kubelet,
    /// One of Kubernetes' own controllers (`identity.kubernetesControllers`).
    Controller,
    /// A node drainer (`identity.evictors`): evicts pods, nothing else.
    Evictor,
}

/// May `role` take `action` on `object`?
pub fn permits(role: Role, object: JobObject, action: Action) -> bool {
    use Action::*;
    let pod = matches!(object, JobObject::Pod { .. });
    match role {
        Role::JobAdmin => true,
        Role::Submitter => !matches!(action, Status | Token),
        Role::Controller => matches!(action, Metadata | Status | Delete | Evict),
        Role::Evictor => pod && action == Evict,
        Role::Operator => match object {
            JobObject::Pod { app_controlled, .. } => action == Delete && app_controlled,
            _ => matches!(action, Metadata | Status | Delete),
        },
        Role::OwnDriver => {
            matches!(object, JobObject::Pod { executor: true, .. })
                && matches!(action, Metadata | Delete)
        }
        Role::Kubelet => pod && matches!(action, Status | Delete | Token),
    }
}

/// Who a request comes from, as far as ownership is concerned. The caller resolves what needs
/// a lookup (`own_driver`: the requester's token is bound to the driver pod of this job).
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub username: &'a str,
    pub groups: &'a [String],
    pub own_driver: bool,
}

/// The identities roles are recognised by (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Trusted<'a> {
    pub admin_users: &'a [String],
    pub admin_groups: &'a [String],
    pub operators: &'a [String],
    pub controllers: &'a [String],
    pub evictor_users: &'a [String],
    pub evictor_groups: &'a [String],
}

/// The roles `who` holds toward an object of the job submitted as `owner` (a Kubernetes
/// username), on node `node` (pods that are scheduled).
pub fn roles(
    who: &Requester<'_>,
    owner: &str,
    node: Option<&str>,
    trusted: &Trusted<'_>,
) -> Vec<Role> {
    let mut out = Vec::new();
    if !owner.is_empty() && who.username == owner {
        out.push(Role::Submitter);
    }
    if trusted.admin_users.iter().any(|u| u == who.username)
        || who.groups.iter().any(|g| trusted.admin_groups.contains(g))
    {
        out.push(Role::JobAdmin);
    }
    if trusted.operators.iter().any(|o| o == who.username) {
        out.push(Role::Operator);
    }
    if trusted.controllers.iter().any(|c| c == who.username) {
        out.push(Role::Controller);
    }
    if trusted.evictor_users.iter().any(|u| u == who.username)
        || who
            .groups
            .iter()
            .any(|g| trusted.evictor_groups.contains(g))
    {
        out.push(Role::Evictor);
    }
    if let Some(node) = node.filter(|n| !n.is_empty())
        && who.username.strip_prefix("system:node:") == Some(node)
        && who.groups.iter().any(|g| g == "system:nodes")
    {
        out.push(Role::Kubelet);
    }
    if who.own_driver {
        out.push(Role::OwnDriver);
    }
    out
}

/// The actions no role of the requester permits (empty: allowed).
pub fn refused(roles: &[Role], object: JobObject, actions: &[Action]) -> Vec<Action> {
    let mut out: Vec<Action> = actions
        .iter()
        .copied()
        .filter(|a| !roles.iter().any(|r| permits(*r, object, *a)))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A refusal, rendered for the kubectl user: the object, its job and owner, what was refused,
/// and who may do it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub object: JobObject,
    pub namespace: String,
    pub name: String,
    pub job_id: String,
    pub owner: String,
    pub requester: String,
    pub refused: Vec<Action>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what: Vec<&str> = self.refused.iter().map(|a| a.describe()).collect();
        write!(
            f,
            "{} {}/{} belongs to job {} of {}; {} may not {}. Only the job's submitter ({}) and \
             the job administrators (identity.jobAdmins) may",
            self.object.kind(),
            self.namespace,
            self.name,
            self.job_id,
            self.owner,
            self.requester,
            what.join(" or "),
            self.owner,
        )?;
        if self.refused.contains(&Action::Token) {
            f.write_str(
                ", and the kubelet of the node the pod runs on: a token bound to a job's pod \
                 lets its holder create pods as that job",
            )
        } else if self.refused.contains(&Action::Spec) || self.refused.contains(&Action::Enter) {
            f.write_str("; ask the submitter, or submit your own job")
        } else {
            f.write_str(
                "; spark-operator, the job's driver (for its executors), the kubelet and \
                 Kubernetes' controllers may write status or metadata or delete as their work \
                 needs",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    struct Cfg {
        admin_users: Vec<String>,
        admin_groups: Vec<String>,
        operators: Vec<String>,
        controllers: Vec<String>,
    }

    fn cfg() -> Cfg {
        Cfg {
            admin_users: s(&["oidc:root-of-data"]),
            admin_groups: s(&["data-platform-admins"]),
            operators: s(&["system:serviceaccount:spark-operator:spark-operator-controller"]),
            controllers: s(&["system:serviceaccount:kube-system:generic-garbage-collector"]),
        }
    }

    fn roles_of(
        username: &str,
        groups: &[&str],
        own_driver: bool,
        node: Option<&str>,
    ) -> Vec<Role> {
        let c = cfg();
        let groups = s(groups);
        roles(
            &Requester {
                username,
                groups: &groups,
                own_driver,
            },
            "oidc:alice",
            node,
            &Trusted {
                admin_users: &c.admin_users,
                admin_groups: &c.admin_groups,
                operators: &c.operators,
                controllers: &c.controllers,
                evictor_users: &[],
                evictor_groups: &["system:masters".to_string()],
            },
        )
    }

    #[test]
    fn requesters_get_their_roles() {
        assert_eq!(
            roles_of("oidc:alice", &[], false, None),
            vec![Role::Submitter]
        );
        assert_eq!(roles_of("oidc:bob", &[], false, None), vec![]);
        assert_eq!(
            roles_of("oidc:root-of-data", &[], false, None),
            vec![Role::JobAdmin]
        );
        assert_eq!(
            roles_of("oidc:carol", &["data-platform-admins"], false, None),
            vec![Role::JobAdmin]
        );
        assert_eq!(
            roles_of("system:node:n1", &["system:nodes"], false, Some("n1")),
            vec![Role::Kubelet]
        );
        // Another node's kubelet, or a user named like a node without the group, is nobody.
        assert_eq!(
            roles_of("system:node:n2", &["system:nodes"], false, Some("n1")),
            vec![]
        );
        assert_eq!(roles_of("system:node:n1", &[], false, Some("n1")), vec![]);
        assert_eq!(
            roles_of("system:node:n1", &["system:nodes"], false, None),
            vec![]
        );
        assert_eq!(
            roles_of("system:serviceaccount:spark-jobs:spark", &[], true, None),
            vec![Role::OwnDriver]
        );
    }

    #[test]
    fn the_table_holds() {
        use Action::*;
        let app = JobObject::SparkApplication;
        let exec = JobObject::Pod {
            executor: true,
            app_controlled: false,
        };
        let driver = JobObject::Pod {
            executor: false,
            app_controlled: true,
        };
        let submit_driver = JobObject::Pod {
            executor: false,
            app_controlled: false,
        };
        let all = [Spec, Metadata, Status, Delete, Enter, Token, Evict];
        for obj in [app, exec, driver] {
            assert!(refused(&[Role::JobAdmin], obj, &all).is_empty(), "{obj:?}");
            // Status is the operator's and the kubelet's, and tokens bound to a job's pod are
            // the kubelet's: not even the submitter gets them.
            assert_eq!(
                refused(&[Role::Submitter], obj, &all),
                vec![Status, Token],
                "{obj:?}"
            );
        }
        assert!(refused(&[Role::Kubelet], exec, &[Token]).is_empty());
        // Node drainers evict pods and do nothing else.
        assert_eq!(
            refused(&[Role::Evictor], exec, &all),
            vec![Spec, Metadata, Status, Delete, Enter, Token]
        );
        assert_eq!(refused(&[Role::Evictor], app, &[Evict]), vec![Evict]);
        assert_eq!(
            roles_of("kubernetes-admin", &["system:masters"], false, None),
            vec![Role::Evictor]
        );
        for role in [Role::Operator, Role::OwnDriver, Role::Controller] {
            assert_eq!(refused(&[role], exec, &[Token]), vec![Token], "{role:?}");
        }
        assert_eq!(
            refused(&[Role::Operator], app, &all),
            vec![Spec, Enter, Token, Evict]
        );
        // The operator deletes the drivers it launched, nothing else, and never edits pods.
        assert_eq!(
            refused(&[Role::Operator], driver, &all),
            vec![Spec, Metadata, Status, Enter, Token, Evict]
        );
        assert_eq!(
            refused(&[Role::Operator], submit_driver, &[Delete]),
            vec![Delete]
        );
        assert_eq!(refused(&[Role::Operator], exec, &[Delete]), vec![Delete]);
        assert_eq!(
            refused(&[Role::Controller], driver, &all),
            vec![Spec, Enter, Token]
        );
        assert_eq!(
            refused(&[Role::Kubelet], driver, &all),
            vec![Spec, Metadata, Enter, Evict]
        );
        assert_eq!(refused(&[Role::Kubelet], app, &[Status]), vec![Status]);
        assert_eq!(
            refused(&[Role::OwnDriver], exec, &all),
            vec![Spec, Status, Enter, Token, Evict]
        );
        // The driver may not delete itself or the application through this role.
        assert_eq!(refused(&[Role::OwnDriver], driver, &[Delete]), vec![Delete]);
        assert_eq!(refused(&[Role::OwnDriver], app, &[Delete]), vec![Delete]);
        // Nobody in particular may do nothing but nothing.
        assert!(refused(&[], app, &[]).is_empty());
        assert_eq!(refused(&[], exec, &[Enter, Spec]), vec![Spec, Enter]);
        // Roles add up.
        assert!(
            refused(
                &[Role::Kubelet, Role::Controller],
                driver,
                &[Status, Metadata, Delete]
            )
            .is_empty()
        );
    }

    #[test]
    fn a_refusal_names_the_owner_and_who_may() {
        let r = Refusal {
            object: JobObject::Pod {
                executor: false,
                app_controlled: true,
            },
            namespace: "spark-jobs".into(),
            name: "etl-driver".into(),
            job_id: "sj-aaaaaaaaaaaaaaaaaaaa".into(),
            owner: "oidc:alice".into(),
            requester: "oidc:bob".into(),
            refused: vec![Action::Enter],
        };
        let text = r.to_string();
        assert!(
            text.contains(
                "Pod spark-jobs/etl-driver belongs to job sj-aaaaaaaaaaaaaaaaaaaa of oidc:alice"
            ),
            "{text}"
        );
        assert!(text.contains("oidc:bob may not enter it"), "{text}");
        assert!(text.contains("identity.jobAdmins"), "{text}");
    }
}
