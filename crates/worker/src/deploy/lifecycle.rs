//! The jobs that act on a deployed app: stop, start, remove, and restart (the current version
//! re-created with the app's current env and limits).

use wisehosting_proto::job::RestartSpec;

use super::error::{CommandError, DeployError};
use super::steps::RunSpec;
use super::{Done, Pipeline, Reporter};
use crate::runtime::firewall;

impl Pipeline {
    /// The app's container ids on this worker.
    async fn container_ids(&self, app_id: i64) -> Vec<String> {
        self.app_containers(app_id).await.into_iter().map(|(id, _)| id).collect()
    }

    pub(super) async fn stop(&self, app_id: i64) -> Result<Done, DeployError> {
        let ids = self.container_ids(app_id).await;
        self.supervisor.release(&ids);
        if !ids.is_empty() {
            self.podman.stop(&ids, 10).await.map_err(CommandError::platform)?;
        }
        Ok(Done::default())
    }

    pub(super) async fn start(&self, app_id: i64) -> Result<Done, DeployError> {
        let ids = self.container_ids(app_id).await;
        if ids.is_empty() {
            return Err(DeployError::user("the app has no container on this worker; deploy it again"));
        }
        self.podman.start(&ids).await.map_err(CommandError::platform)?;
        self.supervisor.rewatch(&ids);
        Ok(Done::default())
    }

    pub(super) async fn remove(&self, app_id: i64) -> Result<Done, DeployError> {
        let ids = self.container_ids(app_id).await;
        self.remove_containers(&ids).await;
        // By tag, without -f: an image another app shares (the same build) only loses this
        // app's tags.
        let tags: Vec<String> = self.image_tags(app_id).await.into_iter().map(|t| t.name).collect();
        if !tags.is_empty() {
            let _ = self.podman.untag(&tags).await;
        }
        // The app's build cache goes with it.
        let _ = tokio::fs::remove_dir_all(self.build_cache_dir(app_id)).await;
        Ok(Done::default())
    }

    /// Re-creates the current version with the app's current env, on a new port.
    pub(super) async fn restart(
        &self,
        app_id: i64,
        spec: &RestartSpec,
        reporter: &Reporter,
    ) -> Result<Done, DeployError> {
        let deployment = spec.deployment_id;
        let current = self
            .app_containers(app_id)
            .await
            .into_iter()
            .find(|(_, d)| *d == Some(deployment))
            .map(|(id, _)| id)
            .ok_or_else(|| {
                DeployError::user("the current version's container is gone from this worker; deploy again")
            })?;
        let inspected = self
            .podman
            .inspect(&current, "{{.Image}} {{.HostConfig.ReadonlyRootfs}}")
            .await
            .map_err(CommandError::platform)?;
        let (image, read_only) = inspected.split_once(' ').unwrap_or((&inspected, "false"));
        let image = wisehosting_proto::job::ImageId::parse(image).map_err(|e| {
            DeployError::platform(format!("podman reported an unexpected image for the container: {e}"))
        })?;
        let work =
            self.data_dir.join("builds").join(format!("{}-restart-{deployment}", self.settings.instance));
        if self.settings.isolate_apps {
            firewall::ensure(&self.podman, &[&firewall::APPS]).await.map_err(|e| {
                DeployError::platform(format!("cannot confine the app, so it was not started: {e}"))
            })?;
        }
        // A restart killed half-way may have left its env file: start afresh.
        let _ = tokio::fs::remove_dir_all(&work).await;
        tokio::fs::create_dir_all(&work)
            .await
            .map_err(|e| DeployError::platform(format!("cannot create {}: {e}", work.display())))?;
        let run = RunSpec {
            image_id: &image,
            port: spec.port,
            env: &spec.env,
            limits: spec.limits,
            read_only_root: read_only == "true",
            health: spec.health.as_ref(),
        };
        let result = self.start_version(&work, app_id, deployment, &run, reporter).await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        result
    }
}
