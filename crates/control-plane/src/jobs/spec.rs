//! The jobs the control plane queues, built from an app's stored rows into the protocol's
//! [`JobSpec`]. Every value was checked when the user gave it; it is read again into the
//! protocol's newtypes here, so a stored value that no longer reads fails the request with the
//! field named instead of reaching a worker.

use std::collections::BTreeMap;

use wisehosting_proto::InvalidField;
use wisehosting_proto::job::{
    AppSpec, Branch, CommitSha, DeploySpec, DockerfilePath, Env, EnvKey, Framework, HealthCheck, HealthPath,
    ImageId, JobSpec, Limits, Port, RepoUrl, RestartSpec, Slug, WireSecret,
};

use crate::plans::Plan;
use crate::store::apps::App;
use crate::store::deployments::Deployment;

/// A stored app that does not read as a job.
#[derive(Debug, thiserror::Error)]
#[error("app {app_id}'s stored {0} does not read; fix the app's settings", .source)]
pub struct StoredAppUnreadable {
    pub app_id: i64,
    pub source: InvalidField,
}

fn read<T>(app: &App, parsed: Result<T, InvalidField>) -> Result<T, StoredAppUnreadable> {
    parsed.map_err(|source| StoredAppUnreadable { app_id: app.id, source })
}

fn health(app: &App) -> Result<HealthCheck, StoredAppUnreadable> {
    Ok(HealthCheck {
        path: read(app, HealthPath::parse(&app.health_check_path))?,
        timeout_secs: app.health_check_timeout_secs.and_then(|t| u32::try_from(t).ok()),
    })
}

fn env(app: &App, env: &BTreeMap<String, String>) -> Result<Env, StoredAppUnreadable> {
    env.iter().map(|(k, v)| Ok((read(app, EnvKey::parse(k))?, WireSecret::new(v.clone())))).collect()
}

fn limits(app: &App, plan: &Plan) -> Result<Limits, StoredAppUnreadable> {
    read(app, Limits::new(plan.memory_mb, plan.cpus))
}

/// The token a deploy clones with: the app's own, or the owner's linked account's.
pub struct RepoCredential {
    pub token: String,
    /// The linked account's provider; `None` for a token of the app's own.
    pub provider: Option<wisehosting_proto::job::GitProvider>,
}

impl std::fmt::Debug for RepoCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoCredential").field("provider", &self.provider).finish_non_exhaustive()
    }
}

/// A deploy of `deployment`: everything the worker needs, env values and the repository token
/// included (sealed at rest in the job row, opened only for the wire).
pub fn deploy(
    app: &App,
    deployment: &Deployment,
    env_values: &BTreeMap<String, String>,
    credential: Option<&RepoCredential>,
    plan: &Plan,
) -> Result<JobSpec, StoredAppUnreadable> {
    deploy_spec(app, deployment, env_values, credential, plan).map(JobSpec::Deploy)
}

fn deploy_spec(
    app: &App,
    deployment: &Deployment,
    env_values: &BTreeMap<String, String>,
    credential: Option<&RepoCredential>,
    plan: &Plan,
) -> Result<DeploySpec, StoredAppUnreadable> {
    Ok(DeploySpec {
        slug: read(app, Slug::parse(&app.slug))?,
        repo_url: read(app, RepoUrl::parse(&app.repo_url))?,
        branch: read(app, Branch::parse(&deployment.branch))?,
        commit: deployment.commit_sha.as_deref().map(|c| read(app, CommitSha::parse(c))).transpose()?,
        framework: read(app, Framework::parse(&app.framework))?,
        dockerfile_path: app
            .dockerfile_path
            .as_deref()
            .map(|p| read(app, DockerfilePath::parse(p)))
            .transpose()?,
        port: read(app, Port::parse(i64::from(app.port)))?,
        env: env(app, env_values)?,
        limits: limits(app, plan)?,
        git_token: credential.map(|c| WireSecret::new(c.token.clone())),
        git_provider: credential.and_then(|c| c.provider),
        image: None,
        health: Some(health(app)?),
    })
}

/// A rollback: a deploy of `deployment` (branch and commit of the earlier one) that runs
/// `image`, the earlier one's, when its worker still has it.
pub fn rollback(
    app: &App,
    deployment: &Deployment,
    image: &str,
    env_values: &BTreeMap<String, String>,
    credential: Option<&RepoCredential>,
    plan: &Plan,
) -> Result<JobSpec, StoredAppUnreadable> {
    let mut spec = deploy_spec(app, deployment, env_values, credential, plan)?;
    spec.image = Some(read(app, ImageId::parse(image))?);
    Ok(JobSpec::Deploy(spec))
}

/// A restart of the app's current version with its current env and limits.
pub fn restart(
    app: &App,
    current_deployment: i64,
    env_values: &BTreeMap<String, String>,
    plan: &Plan,
) -> Result<JobSpec, StoredAppUnreadable> {
    Ok(JobSpec::Restart(RestartSpec {
        slug: read(app, Slug::parse(&app.slug))?,
        deployment_id: current_deployment,
        port: read(app, Port::parse(i64::from(app.port)))?,
        env: env(app, env_values)?,
        limits: limits(app, plan)?,
        health: Some(health(app)?),
    }))
}

/// The jobs that name only their app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppJob {
    Stop,
    Start,
    Remove,
}

/// A stop, start or remove of the app.
pub fn for_app(job: AppJob, app: &App) -> Result<JobSpec, StoredAppUnreadable> {
    let spec = AppSpec { slug: read(app, Slug::parse(&app.slug))? };
    Ok(match job {
        AppJob::Stop => JobSpec::Stop(spec),
        AppJob::Start => JobSpec::Start(spec),
        AppJob::Remove => JobSpec::Remove(spec),
    })
}
