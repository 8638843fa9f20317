//! The states of apps, deployments, jobs and workers, and the moves between them: one place.
//!
//! Each is an enum stored as its snake_case name in a `TEXT` column (the migrations' `CHECK`s
//! list the same names; a test compares them) and shown in the API as that name. The store
//! binds these values instead of writing state names into SQL, and asks here which states a
//! move may start from ([`DeploymentStatus::may_move_to`], the `*_FROM` lists).

use std::fmt;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};
use wisehosting_proto::Phase;

/// A state enum stored as text: names, parsing, serde, and sqlx as `TEXT`.
macro_rules! text_state {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(value: &str) -> Option<$name> {
                match value {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                <&str as Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <&str as Type<Postgres>>::compatible(ty)
            }
        }

        impl PgHasArrayType for $name {
            fn array_type_info() -> PgTypeInfo {
                <&str as PgHasArrayType>::array_type_info()
            }
        }

        impl Encode<'_, Postgres> for $name {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as Encode<Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl Decode<'_, Postgres> for $name {
            fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<Postgres>>::decode(value)?;
                $name::parse(text)
                    .ok_or_else(|| format!("{text:?} is not a {}", stringify!($name)).into())
            }
        }
    };
}

text_state! {
    /// What the user sees of an app.
    AppStatus {
        /// Created, never deployed.
        Created = "created",
        /// Its first deploy is under way.
        Deploying = "deploying",
        Running = "running",
        /// Stopped by the user, or its worker went offline.
        Stopped = "stopped",
        /// Its container exited or crash-loops.
        Crashed = "crashed",
        /// Its first deploy failed.
        Failed = "failed",
        /// Being removed from its worker.
        Deleting = "deleting",
    }
}

impl AppStatus {
    /// States in which the edge routes to the app.
    pub const ROUTABLE: [AppStatus; 2] = [AppStatus::Running, AppStatus::Deploying];
    /// A container running again brings an app back from these.
    pub const BACK_FROM: [AppStatus; 2] = [AppStatus::Crashed, AppStatus::Stopped];
    /// States of an app placed on a worker that hold (or are about to hold) its memory and CPU
    /// there: what placement counts as reserved, and what keeps a worker from being deleted.
    pub const RESERVING: [AppStatus; 3] = [AppStatus::Deploying, AppStatus::Running, AppStatus::Crashed];
    /// A container exiting or crash-looping counts only for a running app.
    pub const CRASHES_FROM: [AppStatus; 1] = [AppStatus::Running];
}

text_state! {
    /// A deployment's progress, from queued to one of the final states.
    DeploymentStatus {
        Queued = "queued",
        Cloning = "cloning",
        Building = "building",
        Starting = "starting",
        HealthChecking = "health_checking",
        Switching = "switching",
        /// The app's current version (until a newer one runs).
        Running = "running",
        /// Ran, and a newer deployment replaced it (or one queued before it was cancelled).
        Superseded = "superseded",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl DeploymentStatus {
    /// States that never change again.
    pub const FINAL: [DeploymentStatus; 4] = [
        DeploymentStatus::Running,
        DeploymentStatus::Superseded,
        DeploymentStatus::Failed,
        DeploymentStatus::Cancelled,
    ];
    /// States a deployment is under way in (it can still fail or be cancelled).
    pub const UNDER_WAY: [DeploymentStatus; 6] = [
        DeploymentStatus::Queued,
        DeploymentStatus::Cloning,
        DeploymentStatus::Building,
        DeploymentStatus::Starting,
        DeploymentStatus::HealthChecking,
        DeploymentStatus::Switching,
    ];

    pub fn is_final(self) -> bool {
        Self::FINAL.contains(&self)
    }

    /// The deployment state a worker's phase shows as.
    pub fn of_phase(phase: Phase) -> Option<DeploymentStatus> {
        Some(match phase {
            Phase::Cloning => DeploymentStatus::Cloning,
            Phase::Building => DeploymentStatus::Building,
            Phase::Starting => DeploymentStatus::Starting,
            Phase::HealthChecking => DeploymentStatus::HealthChecking,
            Phase::Switching => DeploymentStatus::Switching,
            Phase::Other => return None,
        })
    }

    /// Every state a deployment may move to `next` from. A final state is never left, except
    /// that a running deployment becomes superseded when a newer one runs.
    pub fn may_move_to(next: DeploymentStatus) -> &'static [DeploymentStatus] {
        match next {
            DeploymentStatus::Queued => &[],
            DeploymentStatus::Superseded => &[DeploymentStatus::Queued, DeploymentStatus::Running],
            // A phase, the end of a deploy: from any state under way (a worker may skip a phase).
            _ => &Self::UNDER_WAY,
        }
    }
}

text_state! {
    /// A job's place in the queue (SPEC §5).
    JobStatus {
        Queued = "queued",
        /// Leased to a worker, not yet accepted.
        Dispatched = "dispatched",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl JobStatus {
    /// The states of a live lease: a worker's messages about the job count only in these.
    pub const LEASED: [JobStatus; 2] = [JobStatus::Dispatched, JobStatus::Running];
    /// Not finished: queued or leased.
    pub const OPEN: [JobStatus; 3] = [JobStatus::Queued, JobStatus::Dispatched, JobStatus::Running];
}

text_state! {
    /// A worker's registration and link.
    WorkerStatus {
        /// Created, never connected.
        Pending = "pending",
        Online = "online",
        Offline = "offline",
        /// Refused by an operator: never online again until enabled.
        Disabled = "disabled",
    }
}

text_state! {
    /// What an alert rule watches: a metric held over a threshold for `sustain_minutes`, or
    /// an event that fires and resolves at once.
    AlertKind {
        /// CPU use in % of one core.
        Cpu = "cpu",
        /// Memory in use in % of the limit.
        Memory = "memory",
        /// Network traffic in and out, bytes per second.
        Network = "network",
        /// Restarts of the app's containers within the last hour.
        Restarts = "restarts",
        /// The app's worker went offline.
        Offline = "offline",
        /// The app's containers keep exiting.
        Crashloop = "crashloop",
        /// A deployment failed (resolved by the next one that succeeds).
        DeploymentFailed = "deployment_failed",
        /// A webhook endpoint of the user was turned off after failing again and again (no
        /// rule: the platform raises it).
        WebhookDisabled = "webhook_disabled",
        /// A custom domain's certificate failed to be issued or renewed
        /// [`crate::acme::ALERT_AFTER_FAILURES`] times in a row (resolved once one is issued).
        CertificateFailing = "certificate_failing",
    }
}

impl AlertKind {
    /// The kinds held over a threshold for a span.
    pub const METRICS: [AlertKind; 4] =
        [AlertKind::Cpu, AlertKind::Memory, AlertKind::Network, AlertKind::Restarts];
    /// The kinds a new app has a rule for.
    pub const DEFAULT_RULES: [AlertKind; 4] = [
        AlertKind::Crashloop,
        AlertKind::DeploymentFailed,
        AlertKind::Offline,
        AlertKind::CertificateFailing,
    ];

    pub fn is_metric(self) -> bool {
        Self::METRICS.contains(&self)
    }
}

text_state! {
    /// An alert's state: firing until a user acknowledges it; resolved by the platform when
    /// its condition clears, or by a user.
    AlertStatus {
        Firing = "firing",
        Acknowledged = "acknowledged",
        Resolved = "resolved",
    }
}

text_state! {
    /// An operator's role in the admin console (SPEC §10).
    AdminRole {
        /// Everything, admins and grants included.
        SuperAdmin = "super_admin",
        /// Reads tenant data; may pause an app or unlock a stuck deploy.
        Support = "support",
        /// Plans and statements.
        Billing = "billing",
        /// Dashboards only.
        ReadOnly = "read_only",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_deployment_states_are_never_left_except_running_to_superseded() {
        for next in DeploymentStatus::ALL.iter().copied() {
            for &from in DeploymentStatus::may_move_to(next) {
                let allowed = !from.is_final()
                    || (from == DeploymentStatus::Running && next == DeploymentStatus::Superseded);
                assert!(allowed, "{from} -> {next}");
            }
        }
        assert!(DeploymentStatus::may_move_to(DeploymentStatus::Queued).is_empty());
        assert!(
            DeploymentStatus::may_move_to(DeploymentStatus::Failed).contains(&DeploymentStatus::Switching)
        );
    }

    #[test]
    fn every_phase_a_worker_reports_has_a_deployment_state() {
        for phase in Phase::ALL {
            let status = DeploymentStatus::of_phase(phase).map(DeploymentStatus::as_str);
            assert_eq!(status, Some(phase.as_str()));
        }
        assert_eq!(DeploymentStatus::of_phase(Phase::Other), None);
    }
}
