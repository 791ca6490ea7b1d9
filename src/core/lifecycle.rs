//! Lifecycle planning: what should happen to each managed CiliumNetworkPolicy, decided on plain
//! data (DESIGN.md, "Lifecycle"). The controller in `k8s::lifecycle` feeds it snapshots of its
//! caches and applies the actions; nothing here does I/O or reads a clock.
//!
//! Rules, per policy (at most one action each):
//! - only policies named `sparkward-<job-id>` after a valid `sparkward.io/job-id` label are
//!   considered; anything else labelled `managed-by=sparkward` is left alone;
//! - the job's *root* is its SparkApplication, or, for spark-submit and client-mode jobs with no
//!   SparkApplication, its one pod that no other pod owns, that no SparkApplication owns (an
//!   operator driver waits for its application: the operator recreates drivers on retries) and
//!   that is not an executor. Two candidates make the job ambiguous: nothing is done;
//! - **end**: the root reached a terminal state (application `COMPLETED`/`FAILED`, pod
//!   `Succeeded`/`Failed`) at least `end_grace` ago → delete, owned or not;
//! - **adopt**: a root exists and the policy has no owner reference → point it at the root, so
//!   garbage collection removes it with the job;
//! - **reap**: no owner reference, no object of the job at all, and the policy is older than
//!   `orphan_grace` → delete;
//! - otherwise nothing: a running job's policy is never deleted, and an owned policy whose job
//!   has not ended is left to Kubernetes garbage collection.
//!
//! Objects enter the planner only through the shared identity readers
//! (`JobIdentity::from_admitted`), so a pod or application carrying a job id it was not admitted
//! with is not part of any job.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::core::decision::{self, JobIdentity};
use crate::core::labels;
use crate::core::objects::{Meta, OwnerRef};

pub const SPARK_APPLICATION_API_VERSION: &str = "sparkoperator.k8s.io/v1beta2";
pub const SPARK_APPLICATION_KIND: &str = "SparkApplication";
pub const POD_API_VERSION: &str = "v1";
pub const POD_KIND: &str = "Pod";

/// Application states after which spark-operator never runs the application again. `FAILING`,
/// `SUCCEEDING`, `PENDING_RERUN`, `SUBMISSION_FAILED` and the rest may still lead to a rerun.
const TERMINAL_APP_STATES: [&str; 2] = ["COMPLETED", "FAILED"];
/// Pod phases from which a pod never runs again.
const TERMINAL_POD_PHASES: [&str; 2] = ["Succeeded", "Failed"];

/// A CiliumNetworkPolicy labelled `app.kubernetes.io/managed-by=sparkward`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedPolicy {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    /// The `sparkward.io/job-id` label, as found.
    pub job_id: Option<String>,
    pub owner_references: Vec<OwnerRef>,
    /// `metadata.creationTimestamp`; `None` (never seen from a real API server) is never reaped.
    pub created: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobObjectKind {
    SparkApplication,
    Pod,
}

/// A SparkApplication or pod that belongs to an admitted job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobObject {
    pub kind: JobObjectKind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub job_id: String,
    pub owner_references: Vec<OwnerRef>,
    /// `driver`/`executor` for pods (Spark's `spark-role` label).
    pub spark_role: Option<&'static str>,
    /// `status.applicationState.state` of an application, `status.phase` of a pod.
    pub status: Option<String>,
    /// A time the object itself reports for its end (`status.terminationTime`), if any.
    pub reported_end: Option<SystemTime>,
    /// Since when the object is known to be in a terminal state; filled by [`TerminalClock`].
    /// A terminal object without it has not ended long enough for anything.
    pub terminal_since: Option<SystemTime>,
}

impl JobObject {
    /// A SparkApplication view, if it was admitted by sparkward (job id and identity record).
    pub fn spark_application(
        meta: &Meta,
        state: Option<String>,
        reported_end: Option<SystemTime>,
    ) -> Option<Self> {
        Self::admitted(JobObjectKind::SparkApplication, meta, state, reported_end)
    }

    /// A job pod view, if it was admitted by sparkward.
    pub fn pod(meta: &Meta, phase: Option<String>) -> Option<Self> {
        Self::admitted(JobObjectKind::Pod, meta, phase, None)
    }

    fn admitted(
        kind: JobObjectKind,
        meta: &Meta,
        status: Option<String>,
        reported_end: Option<SystemTime>,
    ) -> Option<Self> {
        let job = JobIdentity::from_admitted(meta)?;
        Some(Self {
            kind,
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            job_id: job.job_id,
            owner_references: meta.owner_references.clone(),
            spark_role: match kind {
                JobObjectKind::Pod => decision::spark_role(meta),
                JobObjectKind::SparkApplication => None,
            },
            status,
            reported_end,
            terminal_since: None,
        })
    }

    /// Whether the object is in a state it never leaves to run again.
    pub fn is_terminal(&self) -> bool {
        let Some(status) = self.status.as_deref() else {
            return false;
        };
        match self.kind {
            JobObjectKind::SparkApplication => TERMINAL_APP_STATES.contains(&status),
            JobObjectKind::Pod => TERMINAL_POD_PHASES.contains(&status),
        }
    }

    /// The owner reference that makes this object own a policy.
    pub fn as_owner(&self) -> Owner {
        let (api_version, kind) = match self.kind {
            JobObjectKind::SparkApplication => {
                (SPARK_APPLICATION_API_VERSION, SPARK_APPLICATION_KIND)
            }
            JobObjectKind::Pod => (POD_API_VERSION, POD_KIND),
        };
        Owner {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }

    fn ended(&self, end_grace: Duration, now: SystemTime) -> bool {
        self.is_terminal()
            && self
                .terminal_since
                .is_some_and(|since| since + end_grace <= now)
    }
}

/// Remembers since when each object has been terminal, so the end grace counts from the first
/// sighting (or the object's own reported end, when earlier) across ticks. Objects that are not
/// terminal, or no longer exist, are forgotten: a rerun starts the clock again.
#[derive(Debug, Clone, Default)]
pub struct TerminalClock {
    since: HashMap<String, SystemTime>,
}

impl TerminalClock {
    /// Records this tick's objects and fills their `terminal_since`.
    pub fn observe(&mut self, objects: &mut [JobObject], now: SystemTime) {
        let mut next = HashMap::with_capacity(objects.len());
        for object in objects.iter_mut() {
            if !object.is_terminal() {
                object.terminal_since = None;
                continue;
            }
            let seen = self.since.get(&object.uid).copied().unwrap_or(now);
            // A reported end in the future is not believed beyond now.
            let since = object
                .reported_end
                .map_or(seen, |reported| seen.min(reported.min(now)));
            object.terminal_since = Some(since);
            next.insert(object.uid.clone(), since);
        }
        self.since = next;
    }
}

/// What the policy should point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// The policy an action is about: `uid` is the precondition of a delete and, with
/// `resource_version`, the guard of an adoption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub job_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// The job's root object ended at least `end_grace` ago.
    Ended,
    /// No object of the job exists and the policy is older than `orphan_grace`.
    Orphaned,
}

impl DeleteReason {
    pub fn code(self) -> &'static str {
        match self {
            DeleteReason::Ended => "ended",
            DeleteReason::Orphaned => "orphaned",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Add an owner reference (`controller: false`, `blockOwnerDeletion: false`) to the policy.
    Adopt { policy: PolicyRef, owner: Owner },
    /// Delete the policy, on the condition that its uid is still `policy.uid`.
    Delete {
        policy: PolicyRef,
        reason: DeleteReason,
    },
}

impl Action {
    /// Fixed metric label: `adopt`, `end` or `reap`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Adopt { .. } => "adopt",
            Action::Delete {
                reason: DeleteReason::Ended,
                ..
            } => "end",
            Action::Delete {
                reason: DeleteReason::Orphaned,
                ..
            } => "reap",
        }
    }

    pub fn policy(&self) -> &PolicyRef {
        match self {
            Action::Adopt { policy, .. } | Action::Delete { policy, .. } => policy,
        }
    }
}

/// Everything the planner looks at.
#[derive(Debug, Clone, Copy)]
pub struct LifecycleInput<'a> {
    pub policies: &'a [ManagedPolicy],
    /// Admitted SparkApplications and job pods, with `terminal_since` filled.
    pub objects: &'a [JobObject],
    pub end_grace: Duration,
    pub orphan_grace: Duration,
}

/// Where a job's objects stand.
enum Root<'a> {
    /// The object whose life is the job's.
    Found(&'a JobObject),
    /// Objects of the job exist, but none (or more than one) can own the policy.
    Unclear,
    /// Nothing of the job exists.
    Absent,
}

fn root_of<'a>(objects: &[&'a JobObject]) -> Root<'a> {
    if objects.is_empty() {
        return Root::Absent;
    }
    let mut apps = objects
        .iter()
        .filter(|o| o.kind == JobObjectKind::SparkApplication);
    if let Some(app) = apps.next() {
        return if apps.next().is_none() {
            Root::Found(app)
        } else {
            Root::Unclear
        };
    }
    let mut candidates = objects.iter().filter(|o| {
        o.kind == JobObjectKind::Pod
            && o.spark_role != Some("executor")
            && !o
                .owner_references
                .iter()
                .any(|r| r.kind == POD_KIND || r.kind == SPARK_APPLICATION_KIND)
    });
    match (candidates.next(), candidates.next()) {
        (Some(pod), None) => Root::Found(pod),
        _ => Root::Unclear,
    }
}

/// The actions that bring the managed policies in line with their jobs, sorted by namespace
/// and name.
pub fn plan_lifecycle(input: &LifecycleInput<'_>, now: SystemTime) -> Vec<Action> {
    let mut jobs: HashMap<(&str, &str), Vec<&JobObject>> = HashMap::new();
    for object in input.objects {
        jobs.entry((object.namespace.as_str(), object.job_id.as_str()))
            .or_default()
            .push(object);
    }
    let mut policies: Vec<&ManagedPolicy> = input.policies.iter().collect();
    policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let mut actions = Vec::new();
    for policy in policies {
        let Some(job_id) = policy
            .job_id
            .as_deref()
            .filter(|id| labels::is_job_id(id) && policy.name == labels::policy_name(id))
        else {
            continue;
        };
        let target = PolicyRef {
            namespace: policy.namespace.clone(),
            name: policy.name.clone(),
            uid: policy.uid.clone(),
            resource_version: policy.resource_version.clone(),
            job_id: job_id.to_string(),
        };
        let objects = jobs
            .get(&(policy.namespace.as_str(), job_id))
            .map_or(&[][..], Vec::as_slice);
        let unowned = policy.owner_references.is_empty();
        match root_of(objects) {
            Root::Found(root) if root.ended(input.end_grace, now) => {
                actions.push(Action::Delete {
                    policy: target,
                    reason: DeleteReason::Ended,
                });
            }
            Root::Found(root) if unowned => actions.push(Action::Adopt {
                policy: target,
                owner: root.as_owner(),
            }),
            Root::Absent
                if unowned
                    && policy
                        .created
                        .is_some_and(|created| created + input.orphan_grace <= now) =>
            {
                actions.push(Action::Delete {
                    policy: target,
                    reason: DeleteReason::Orphaned,
                });
            }
            _ => {}
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::labels::{
        ISSUER_ANNOTATION, JOB_ID_LABEL, SPARK_ROLE_LABEL, SUBMITTER_ANNOTATION, USER_LABEL,
    };

    const NS: &str = "spark-jobs";
    const END_GRACE: Duration = Duration::from_secs(60);
    const ORPHAN_GRACE: Duration = Duration::from_secs(300);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn ago(secs: u64) -> SystemTime {
        now() - Duration::from_secs(secs)
    }

    fn job(n: u32) -> String {
        labels::job_id_for_test(&format!("request-{n}"))
    }

    fn mk_policy(n: u32, created_ago: u64) -> ManagedPolicy {
        let job_id = job(n);
        ManagedPolicy {
            namespace: NS.into(),
            name: labels::policy_name(&job_id),
            uid: format!("cnp-uid-{n}"),
            resource_version: "10".into(),
            job_id: Some(job_id),
            owner_references: vec![],
            created: Some(ago(created_ago)),
        }
    }

    fn owned(mut p: ManagedPolicy, owner: &JobObject) -> ManagedPolicy {
        let o = owner.as_owner();
        p.owner_references.push(OwnerRef {
            api_version: o.api_version,
            kind: o.kind,
            name: o.name,
            uid: o.uid,
            controller: Some(false),
        });
        p
    }

    fn mk_meta(n: u32, name: &str, role: Option<&str>, owners: Vec<OwnerRef>) -> Meta {
        let mut labels = BTreeMap::from([
            (JOB_ID_LABEL.to_string(), job(n)),
            (USER_LABEL.to_string(), "alice".to_string()),
        ]);
        if let Some(role) = role {
            labels.insert(SPARK_ROLE_LABEL.into(), role.into());
        }
        Meta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            uid: Some(format!("{name}-uid")),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([
                (SUBMITTER_ANNOTATION.to_string(), "alice".to_string()),
                (ISSUER_ANNOTATION.to_string(), "https://idp".to_string()),
            ])),
            owner_references: owners,
            ..Meta::default()
        }
    }

    fn mk_app(n: u32, state: Option<&str>) -> JobObject {
        let meta = mk_meta(n, &format!("app-{n}"), None, vec![]);
        JobObject::spark_application(&meta, state.map(str::to_string), None).unwrap()
    }

    fn owner_ref(o: &JobObject) -> OwnerRef {
        let owner = o.as_owner();
        OwnerRef {
            api_version: owner.api_version,
            kind: owner.kind,
            name: owner.name,
            uid: owner.uid,
            controller: Some(true),
        }
    }

    fn mk_pod(
        n: u32,
        name: &str,
        role: Option<&str>,
        phase: &str,
        owner: Option<&JobObject>,
    ) -> JobObject {
        let meta = mk_meta(n, name, role, owner.map(owner_ref).into_iter().collect());
        JobObject::pod(&meta, Some(phase.into())).unwrap()
    }

    fn terminal(mut o: JobObject, since_ago: u64) -> JobObject {
        assert!(o.is_terminal(), "{o:?}");
        o.terminal_since = Some(ago(since_ago));
        o
    }

    fn plan(policies: &[ManagedPolicy], objects: &[JobObject]) -> Vec<Action> {
        plan_lifecycle(
            &LifecycleInput {
                policies,
                objects,
                end_grace: END_GRACE,
                orphan_grace: ORPHAN_GRACE,
            },
            now(),
        )
    }

    /// What the planner decided for one policy, in short.
    #[derive(Debug, PartialEq)]
    enum Want {
        Nothing,
        AdoptBy(&'static str, String),
        End,
        Reap,
    }

    fn summary(actions: &[Action]) -> Want {
        match actions {
            [] => Want::Nothing,
            [Action::Adopt { owner, .. }] => Want::AdoptBy(
                if owner.kind == POD_KIND {
                    "Pod"
                } else {
                    "SparkApplication"
                },
                owner.name.clone(),
            ),
            [
                Action::Delete {
                    reason: DeleteReason::Ended,
                    ..
                },
            ] => Want::End,
            [
                Action::Delete {
                    reason: DeleteReason::Orphaned,
                    ..
                },
            ] => Want::Reap,
            more => panic!("more than one action for one policy: {more:?}"),
        }
    }

    #[test]
    fn each_policy_gets_the_action_its_job_calls_for() {
        let app = mk_app(1, Some("RUNNING"));
        let driver = mk_pod(1, "submit-driver", Some("driver"), "Running", None);
        let operator_driver = mk_pod(1, "app-1-driver", Some("driver"), "Running", Some(&app));
        let executor_of = |d: &JobObject| mk_pod(1, "exec-1", Some("executor"), "Running", Some(d));
        let cases: Vec<(&str, ManagedPolicy, Vec<JobObject>, Want)> = vec![
            (
                "an unowned policy of a running application is adopted by the application",
                mk_policy(1, 10),
                vec![
                    app.clone(),
                    operator_driver.clone(),
                    executor_of(&operator_driver),
                ],
                Want::AdoptBy("SparkApplication", "app-1".into()),
            ),
            (
                "a freshly admitted application with no status yet is adopted",
                mk_policy(1, 1),
                vec![mk_app(1, None)],
                Want::AdoptBy("SparkApplication", "app-1".into()),
            ),
            (
                "a spark-submit job is adopted by its driver pod",
                mk_policy(1, 10),
                vec![driver.clone(), executor_of(&driver)],
                Want::AdoptBy("Pod", "submit-driver".into()),
            ),
            (
                "a client-mode pod with no spark role is the root of its job",
                mk_policy(1, 10),
                vec![mk_pod(1, "notebook", None, "Running", None)],
                Want::AdoptBy("Pod", "notebook".into()),
            ),
            (
                "an operator driver waits for its application instead of owning the policy",
                mk_policy(1, 10),
                vec![operator_driver.clone()],
                Want::Nothing,
            ),
            (
                "executors alone never own the policy",
                mk_policy(1, 10),
                vec![mk_pod(1, "exec-1", Some("executor"), "Running", None)],
                Want::Nothing,
            ),
            (
                "two root pods make the job ambiguous",
                mk_policy(1, 10),
                vec![
                    mk_pod(1, "a", Some("driver"), "Running", None),
                    mk_pod(1, "b", Some("driver"), "Running", None),
                ],
                Want::Nothing,
            ),
            (
                "an owned policy of a running application is left alone",
                owned(mk_policy(1, 1000), &app),
                vec![app.clone()],
                Want::Nothing,
            ),
            (
                "an application completed longer than the grace ago ends its policy",
                owned(mk_policy(1, 1000), &app),
                vec![terminal(mk_app(1, Some("COMPLETED")), 61)],
                Want::End,
            ),
            (
                "an application failed exactly the grace ago ends its policy",
                mk_policy(1, 1000),
                vec![terminal(mk_app(1, Some("FAILED")), 60)],
                Want::End,
            ),
            (
                "an application completed within the grace keeps its policy (and adopts it)",
                mk_policy(1, 1000),
                vec![terminal(mk_app(1, Some("COMPLETED")), 59)],
                Want::AdoptBy("SparkApplication", "app-1".into()),
            ),
            (
                "an owned policy of an application completed within the grace is kept",
                owned(mk_policy(1, 1000), &app),
                vec![terminal(mk_app(1, Some("COMPLETED")), 59)],
                Want::Nothing,
            ),
            (
                "a terminal application whose end time is unknown is not ended yet",
                owned(mk_policy(1, 1000), &app),
                vec![mk_app(1, Some("COMPLETED"))],
                Want::Nothing,
            ),
            (
                "a spark-submit driver that succeeded long ago ends its policy",
                owned(mk_policy(1, 1000), &driver),
                vec![terminal(
                    mk_pod(1, "submit-driver", Some("driver"), "Succeeded", None),
                    600,
                )],
                Want::End,
            ),
            (
                "a spark-submit driver that failed long ago ends its policy",
                mk_policy(1, 1000),
                vec![terminal(
                    mk_pod(1, "submit-driver", Some("driver"), "Failed", None),
                    600,
                )],
                Want::End,
            ),
            (
                "an old orphan with no object of its job is reaped",
                mk_policy(1, 301),
                vec![],
                Want::Reap,
            ),
            (
                "a young orphan is kept for the grace",
                mk_policy(1, 299),
                vec![],
                Want::Nothing,
            ),
            (
                "an orphan of unknown age is never reaped",
                ManagedPolicy {
                    created: None,
                    ..mk_policy(1, 0)
                },
                vec![],
                Want::Nothing,
            ),
            (
                "an owned policy whose owner is gone is left to garbage collection",
                owned(mk_policy(1, 1000), &app),
                vec![],
                Want::Nothing,
            ),
            (
                "objects of another job do not keep an orphan",
                mk_policy(1, 1000),
                vec![mk_app(2, Some("RUNNING"))],
                Want::Reap,
            ),
            (
                "objects of the job in another namespace do not count",
                mk_policy(1, 1000),
                vec![JobObject {
                    namespace: "elsewhere".into(),
                    ..mk_app(1, Some("RUNNING"))
                }],
                Want::Reap,
            ),
            (
                "an old policy of a job whose pods still exist is kept",
                mk_policy(1, 1000),
                vec![mk_pod(1, "exec-1", Some("executor"), "Running", None)],
                Want::Nothing,
            ),
            (
                "a managed policy that is not named after its job id is not touched",
                ManagedPolicy {
                    name: "default-deny".into(),
                    ..mk_policy(1, 1000)
                },
                vec![],
                Want::Nothing,
            ),
            (
                "a managed policy without a job id is not touched",
                ManagedPolicy {
                    job_id: None,
                    ..mk_policy(1, 1000)
                },
                vec![],
                Want::Nothing,
            ),
            (
                "a malformed job id is not touched",
                ManagedPolicy {
                    job_id: Some("sj-x".into()),
                    name: "sparkward-sj-x".into(),
                    ..mk_policy(1, 1000)
                },
                vec![],
                Want::Nothing,
            ),
        ];
        for (name, policy, objects, want) in cases {
            let actions = plan(std::slice::from_ref(&policy), &objects);
            assert_eq!(summary(&actions), want, "{name}");
        }
    }

    #[test]
    fn intermediate_application_states_never_end_a_policy() {
        let app = mk_app(1, None);
        for state in [
            "",
            "NEW",
            "SUBMITTED",
            "RUNNING",
            "PENDING_RERUN",
            "INVALIDATING",
            "SUCCEEDING",
            "FAILING",
            "SUBMISSION_FAILED",
            "UNKNOWN",
            "SUSPENDING",
            "SUSPENDED",
            "RESUMING",
        ] {
            let mut object = mk_app(1, Some(state));
            assert!(!object.is_terminal(), "{state}");
            object.terminal_since = Some(ago(100_000));
            let actions = plan(&[owned(mk_policy(1, 100_000), &app)], &[object]);
            assert_eq!(actions, vec![], "{state}");
        }
    }

    #[test]
    fn running_pod_phases_never_end_a_policy() {
        for phase in ["Pending", "Running", "Unknown"] {
            let driver = mk_pod(1, "d", Some("driver"), phase, None);
            assert!(!driver.is_terminal(), "{phase}");
            let actions = plan(
                &[owned(mk_policy(1, 100_000), &driver)],
                std::slice::from_ref(&driver),
            );
            assert_eq!(actions, vec![], "{phase}");
        }
    }

    #[test]
    fn actions_carry_the_preconditions_and_owner() {
        let app = mk_app(1, Some("RUNNING"));
        let policy = mk_policy(1, 10);
        let actions = plan(std::slice::from_ref(&policy), std::slice::from_ref(&app));
        let expected_ref = PolicyRef {
            namespace: NS.into(),
            name: policy.name.clone(),
            uid: "cnp-uid-1".into(),
            resource_version: "10".into(),
            job_id: job(1),
        };
        assert_eq!(
            actions,
            vec![Action::Adopt {
                policy: expected_ref.clone(),
                owner: Owner {
                    api_version: "sparkoperator.k8s.io/v1beta2".into(),
                    kind: "SparkApplication".into(),
                    name: "app-1".into(),
                    uid: "app-1-uid".into(),
                },
            }]
        );
        assert_eq!(actions[0].name(), "adopt");
        let ended = plan(&[policy], &[terminal(mk_app(1, Some("FAILED")), 3600)]);
        assert_eq!(
            ended,
            vec![Action::Delete {
                policy: expected_ref,
                reason: DeleteReason::Ended
            }]
        );
        assert_eq!(ended[0].name(), "end");
        assert_eq!(plan(&[mk_policy(3, 3600)], &[])[0].name(), "reap");
    }

    #[test]
    fn many_policies_are_planned_independently_and_in_order() {
        let app2 = mk_app(2, Some("RUNNING"));
        let policies = vec![
            mk_policy(3, 3600),
            owned(mk_policy(2, 3600), &app2),
            mk_policy(1, 3600),
        ];
        let objects = vec![terminal(mk_app(1, Some("COMPLETED")), 3600), app2];
        let actions = plan(&policies, &objects);
        let names: Vec<(&str, &str)> = actions
            .iter()
            .map(|a| (a.name(), a.policy().job_id.as_str()))
            .collect();
        let mut expected = [("end", job(1)), ("reap", job(3))];
        expected.sort_by_key(|(_, job_id)| labels::policy_name(job_id));
        let expected: Vec<(&str, &str)> = expected.iter().map(|(a, j)| (*a, j.as_str())).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn objects_without_an_admitted_identity_are_not_part_of_a_job() {
        let mut meta = mk_meta(1, "app-1", None, vec![]);
        // Hand-written job id without the identity record.
        meta.annotations = None;
        assert_eq!(JobObject::spark_application(&meta, None, None), None);
        // A user label that does not match the submitter.
        let mut meta = mk_meta(1, "app-1", None, vec![]);
        meta.labels
            .as_mut()
            .unwrap()
            .insert(USER_LABEL.into(), "mallory".into());
        assert_eq!(JobObject::pod(&meta, None), None);
        // No uid (not persisted).
        let mut meta = mk_meta(1, "p", None, vec![]);
        meta.uid = None;
        assert_eq!(JobObject::pod(&meta, None), None);
    }

    #[test]
    fn the_terminal_clock_counts_from_the_first_sighting() {
        let mut clock = TerminalClock::default();
        let mut objects = vec![mk_app(1, Some("COMPLETED")), mk_app(2, Some("RUNNING"))];
        clock.observe(&mut objects, ago(100));
        assert_eq!(objects[0].terminal_since, Some(ago(100)));
        assert_eq!(objects[1].terminal_since, None);
        // Later ticks keep the first sighting.
        let mut objects = vec![mk_app(1, Some("COMPLETED")), mk_app(2, Some("COMPLETED"))];
        clock.observe(&mut objects, now());
        assert_eq!(objects[0].terminal_since, Some(ago(100)));
        assert_eq!(objects[1].terminal_since, Some(now()));
        // Leaving the terminal state (a rerun) resets the clock.
        let mut objects = vec![mk_app(1, Some("PENDING_RERUN"))];
        clock.observe(&mut objects, now());
        let mut objects = vec![mk_app(1, Some("COMPLETED"))];
        clock.observe(&mut objects, now());
        assert_eq!(objects[0].terminal_since, Some(now()));
    }

    #[test]
    fn the_terminal_clock_believes_an_earlier_reported_end_but_not_a_future_one() {
        let mut clock = TerminalClock::default();
        let mut objects = vec![
            JobObject {
                reported_end: Some(ago(500)),
                ..mk_app(1, Some("FAILED"))
            },
            JobObject {
                reported_end: Some(now() + Duration::from_secs(500)),
                ..mk_app(2, Some("FAILED"))
            },
            // A reported end on a running application means nothing.
            JobObject {
                reported_end: Some(ago(500)),
                ..mk_app(3, Some("RUNNING"))
            },
        ];
        clock.observe(&mut objects, now());
        assert_eq!(objects[0].terminal_since, Some(ago(500)));
        assert_eq!(objects[1].terminal_since, Some(now()));
        assert_eq!(objects[2].terminal_since, None);
    }
}
