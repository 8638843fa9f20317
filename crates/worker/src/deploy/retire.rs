//! An app's containers and images on this worker, and how old ones go: the retire after a
//! switch (drain, then stop and remove), removals (cancel, delete, re-sync) and image pruning
//! (the newest three deployments' images stay).

use std::time::Duration;

use super::Pipeline;

impl Pipeline {
    /// The tags of the app's images on this worker.
    pub(super) async fn image_tags(&self, app_id: i64) -> Vec<ImageTag> {
        let repo = self.image_repo(app_id);
        own_tags(&self.podman.images_json(&repo).await, &repo)
    }

    /// The app's containers, as (id, deployment id).
    pub(super) async fn app_containers(&self, app_id: i64) -> Vec<(String, Option<i64>)> {
        self.app_container_ports(app_id)
            .await
            .into_iter()
            .map(|(id, deployment, _)| (id, deployment))
            .collect()
    }

    /// The app's containers with their published host ports.
    async fn app_container_ports(&self, app_id: i64) -> Vec<(String, Option<i64>, Option<u16>)> {
        let filters = [format!("label={}={app_id}", wisehosting_proto::LABEL_APP), self.instance_filter()];
        self.podman
            .containers(&filters)
            .await
            .into_iter()
            .map(|c| (c.id, c.deployment_id, c.host_port))
            .collect()
    }

    /// Stops and removes the app's other containers, after the drain delay, so requests they
    /// still serve finish.
    /// Only containers of this deployment or older ones: a newer deploy's container, started
    /// meanwhile, is never touched.
    pub(super) async fn retire_others(&self, app_id: i64, keep: &str, deployment_id: Option<i64>) {
        let old: Vec<(String, Option<u16>)> = self
            .app_container_ports(app_id)
            .await
            .into_iter()
            .filter(|(id, d, _)| id != keep && d.zip(deployment_id).is_none_or(|(d, mine)| d <= mine))
            .map(|(id, _, port)| (id, port))
            .collect();
        if old.is_empty() {
            return;
        }
        // First the edge router moves its route away and finishes what is in flight to the
        // old containers (bounded); then the drain delay covers other proxies and bodies
        // still streaming.
        if let Some(edge) = &self.edge {
            for port in old.iter().filter_map(|(_, p)| *p) {
                let upstream = format!("127.0.0.1:{port}");
                if !edge.wait_drained(&upstream, Duration::from_secs(30)).await {
                    tracing::warn!(%upstream, "the edge router still routes to an old container after 30 s; stopping it anyway");
                }
            }
        }
        let others: Vec<String> = old.into_iter().map(|(id, _)| id).collect();
        self.supervisor.release(&others);
        tokio::time::sleep(Duration::from_secs(self.settings.drain_secs)).await;
        let _ = self.podman.stop(&others, 5).await;
        self.remove_containers(&others).await;
    }

    /// Removes containers at once (SIGKILL), for what must not run.
    pub(super) async fn remove_containers(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        self.supervisor.release(ids);
        // A container being started or stopped can refuse one `rm`; a few tries a moment
        // apart settle it. `--ignore` makes an already-gone container a success.
        for attempt in 1..=5 {
            match self.podman.remove(ids).await {
                Ok(_) => return,
                Err(e) if attempt == 5 => tracing::warn!(error = %e, "cannot remove containers"),
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "podman rm refused; trying again");
                    tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
                }
            }
        }
    }

    /// Removes containers the control plane does not want: those of apps it does not place
    /// here, and those of other deployments than an idle app's current one.
    pub async fn reconcile(&self, desired: &wisehosting_proto::messages::DesiredState) {
        let orphans: Vec<String> = self
            .podman
            .containers(&[self.instance_filter()])
            .await
            .into_iter()
            .filter(|c| match c.app_id.and_then(|app| desired.apps.iter().find(|d| d.app_id == app)) {
                None => true,
                Some(d) => !d.busy && d.deployment_id != c.deployment_id,
            })
            .map(|c| c.id)
            .collect();
        if !orphans.is_empty() {
            tracing::info!(count = orphans.len(), "removing containers the control plane no longer wants");
            self.remove_containers(&orphans).await;
        }
    }

    pub(super) async fn remove_deployment_containers(&self, app_id: i64, deployment_id: i64) {
        let ids: Vec<String> = self
            .app_containers(app_id)
            .await
            .into_iter()
            .filter(|(_, d)| *d == Some(deployment_id))
            .map(|(id, _)| id)
            .collect();
        self.remove_containers(&ids).await;
    }

    /// Keeps the images of the app's newest `deploy.keep_images` deployments (and the one in
    /// use); untags the rest, and podman deletes an image when its last tag goes. Without
    /// `-f`: an image a container still uses (one draining, say) stays until a later prune.
    pub(super) async fn prune_images(&self, app_id: i64, in_use: &str) {
        let old = tags_to_prune(&self.image_tags(app_id).await, in_use, self.settings.keep_images);
        if !old.is_empty()
            && let Err(e) = self.podman.untag(&old).await
        {
            tracing::debug!(error = %e, "some old images are still in use; a later prune takes them");
        }
    }
}

/// One tag of an app's image repository: `repo:d<deployment>`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ImageTag {
    deployment: i64,
    pub name: String,
    image_id: String,
}

/// The tags in `repo` of `podman images --format json` output, oldest deployment first.
/// Names of other repositories that share an image are left out.
fn own_tags(images_json: &str, repo: &str) -> Vec<ImageTag> {
    let Ok(serde_json::Value::Array(images)) = serde_json::from_str::<serde_json::Value>(images_json) else {
        return Vec::new();
    };
    let prefix = format!("{repo}:d");
    let prefix = prefix.as_str();
    let mut tags: Vec<ImageTag> = images
        .iter()
        .flat_map(|i| {
            let image_id = i["Id"].as_str().unwrap_or_default().trim_start_matches("sha256:").to_string();
            let names = i["Names"].as_array().cloned().unwrap_or_default();
            names.into_iter().filter_map(move |n| {
                let name = n.as_str()?;
                let deployment = name.strip_prefix(prefix)?.parse::<i64>().ok()?;
                Some(ImageTag { deployment, name: name.to_string(), image_id: image_id.clone() })
            })
        })
        .collect();
    tags.sort_by(|a, b| (a.deployment, &a.name).cmp(&(b.deployment, &b.name)));
    tags.dedup_by(|a, b| a.name == b.name);
    tags
}

/// The tags to remove: all but the newest `keep` deployments' and those of the image in use.
fn tags_to_prune(tags: &[ImageTag], in_use: &str, keep: usize) -> Vec<String> {
    let in_use = in_use.trim_start_matches("sha256:");
    let mut newest: Vec<i64> = tags.iter().map(|t| t.deployment).collect();
    newest.sort_unstable_by(|a, b| b.cmp(a));
    newest.dedup();
    newest.truncate(keep);
    tags.iter()
        .filter(|t| !newest.contains(&t.deployment) && t.image_id != in_use)
        .map(|t| t.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_three_deployments_and_the_image_in_use() {
        // d1 and d2 share an image (a cached build); d7 is in use though old.
        let images = r#"[
            {"Id": "sha256:aaa", "Names": ["localhost/x-app1:d1", "localhost/x-app1:d2"]},
            {"Id": "aaa7", "Names": ["localhost/x-app1:d7"]},
            {"Id": "bbb", "Names": ["localhost/x-app1:d8", "localhost/x-app1:d9"]},
            {"Id": "ccc", "Names": ["localhost/x-app1:d10", "other:latest"]}
        ]"#;
        let repo = "localhost/x-app1";
        assert_eq!(
            tags_to_prune(&own_tags(images, repo), "sha256:aaa7", 3),
            vec!["localhost/x-app1:d1", "localhost/x-app1:d2"]
        );
        assert_eq!(
            tags_to_prune(&own_tags(images, repo), "sha256:none", 3),
            vec!["localhost/x-app1:d1", "localhost/x-app1:d2", "localhost/x-app1:d7"]
        );
        assert!(tags_to_prune(&own_tags("not json", repo), "x", 3).is_empty());
    }

    #[test]
    fn another_apps_tags_on_a_shared_image_are_never_pruned() {
        // app1 and app12 built the same image; app1's listing shows app12's names too.
        let images = r#"[
            {"Id": "sha256:aaa", "Names": ["localhost/x-app1:d1", "localhost/x-app12:d2", "localhost/x-app1:d3"]},
            {"Id": "sha256:bbb", "Names": ["localhost/x-app1:d4", "localhost/x-app1:d5", "localhost/x-app1:d6"]}
        ]"#;
        assert_eq!(
            tags_to_prune(&own_tags(images, "localhost/x-app1"), "sha256:bbb", 3),
            vec!["localhost/x-app1:d1", "localhost/x-app1:d3"]
        );
        let own: Vec<String> = own_tags(images, "localhost/x-app1").into_iter().map(|t| t.name).collect();
        assert!(!own.iter().any(|t| t.contains("app12")), "{own:?}");
    }
}
