//! What a repository's Containerfile may ask of the worker (SPEC §6, issue 10 item 6).
//!
//! Before `podman build` runs, the file is read for the images it pulls — every `FROM`, and
//! every `COPY --from=` / `RUN --mount=…,from=` that names an image rather than a stage — and
//! for cache mounts:
//!
//! - an image must come from an allowed registry (`deploy.base_image_registries`; a short
//!   name like `node:20` is Docker Hub's); `localhost/…` means an image already on this
//!   worker, never a registry on the host;
//! - a registry whose name is an IP literal must be public, and so must every address a
//!   registry's name resolves to when the worker looks ([`Pipeline::check_images`]; podman
//!   resolves it again for the pull, which the worker cannot pin);
//! - `$VAR` in an image is resolved from the file's global `ARG` defaults (the only values a
//!   build gets here); anything else is refused, since it could name any registry;
//! - `RUN --mount=type=cache` is refused: buildah keeps cache mounts in one directory per
//!   host, so one app could read or poison another app's cache.
//!
//! Also here: the build's resource limits ([`build_limits`]).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::Pipeline;
use super::error::DeployError;
use super::git::{is_public_ip, resolve};

message_error! {
    /// What the Containerfile asks that the worker will not do, and what to change: the user's
    /// to fix.
    pub Refused
}

macro_rules! refused {
    ($($arg:tt)*) => { Refused(format!($($arg)*)) };
}

/// An image a build would pull or use, by registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `docker.io`, `quay.io`, `localhost`, `10.0.0.5:5000`, …
    pub registry: String,
    /// As written, `$VAR`s resolved.
    pub reference: String,
}

/// The images `text` uses, each from an allowed registry, or a message naming what to change.
pub fn check(text: &str, allowed_registries: &[String]) -> Result<Vec<ImageRef>, Refused> {
    let mut args: HashMap<String, String> = HashMap::new();
    let mut stages: HashSet<String> = HashSet::new();
    let mut images = Vec::new();
    let mut seen_from = false;
    for instruction in instructions(text) {
        let mut words = instruction.split_whitespace();
        let Some(keyword) = words.next() else { continue };
        let words: Vec<&str> = words.collect();
        match keyword.to_ascii_uppercase().as_str() {
            "ARG" if !seen_from => {
                for word in &words {
                    let (name, value) = word.split_once('=').unwrap_or((word, ""));
                    args.insert(name.to_string(), value.trim_matches('"').to_string());
                }
            }
            "FROM" => {
                seen_from = true;
                let mut rest = words.iter().filter(|w| !w.starts_with("--"));
                let image = rest.next().ok_or("a FROM line names no image; write `FROM <image>`")?;
                let image = expand(image, &args)?;
                if !stages.contains(&image.to_ascii_lowercase()) && image != "scratch" {
                    images.push(image_ref(&image, allowed_registries)?);
                }
                if let (Some(as_kw), Some(name)) = (rest.next(), rest.next())
                    && as_kw.eq_ignore_ascii_case("as")
                {
                    stages.insert(name.to_ascii_lowercase());
                }
            }
            "COPY" | "ADD" => {
                for word in &words {
                    if let Some(from) = word.strip_prefix("--from=") {
                        images.extend(other_image(from, &stages, &args, allowed_registries)?);
                    }
                }
            }
            "RUN" => {
                for word in words.iter().take_while(|w| w.starts_with("--")) {
                    let Some(mount) = word.strip_prefix("--mount=") else { continue };
                    for option in mount.split(',') {
                        let (key, value) = option.split_once('=').unwrap_or((option, ""));
                        if key.eq_ignore_ascii_case("type") && value.eq_ignore_ascii_case("cache") {
                            return Err("RUN --mount=type=cache is not allowed: its cache would be shared with other apps on the worker; remove the mount (layers are still cached)".into());
                        }
                        if key.eq_ignore_ascii_case("from") {
                            images.extend(other_image(value, &stages, &args, allowed_registries)?);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(images)
}

/// The instructions of a Containerfile: comments dropped, `\` continuations joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else if !trimmed.starts_with('#') {
            current.push_str(trimmed);
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `from` of `COPY --from=` or a mount: a stage (by name or index) or an image.
fn other_image(
    from: &str,
    stages: &HashSet<String>,
    args: &HashMap<String, String>,
    allowed: &[String],
) -> Result<Option<ImageRef>, Refused> {
    let from = expand(from, args)?;
    if stages.contains(&from.to_ascii_lowercase()) || from.chars().all(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    image_ref(&from, allowed).map(Some)
}

/// `$NAME` and `${NAME}` replaced by the global `ARG` defaults; other forms refused.
fn expand(word: &str, args: &HashMap<String, String>) -> Result<String, Refused> {
    let refuse = || {
        format!(
            "the image {word:?} uses a variable that has no default; give the ARG a default before the first FROM, or write the image out"
        )
    };
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(inner) => inner.split_once('}').ok_or_else(refuse)?,
            None => {
                let end =
                    after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        let value = args.get(name).filter(|v| !v.is_empty() && !v.contains('$')).ok_or_else(refuse)?;
        out.push_str(value);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// Where an image comes from, checked against the allowed registries.
fn image_ref(image: &str, allowed: &[String]) -> Result<ImageRef, Refused> {
    let bad = image.is_empty()
        || image.starts_with(['-', '/'])
        || !image.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@[]".contains(c));
    if bad {
        return Err(refused!("{image:?} is not an image reference"));
    }
    let first = image.split('/').next().unwrap_or_default();
    let registry = if image.contains('/') && (first.contains(['.', ':', '[']) || first == "localhost") {
        first.to_ascii_lowercase()
    } else {
        "docker.io".to_string()
    };
    let host = registry_host(&registry);
    if let Ok(ip) = host.parse::<IpAddr>()
        && !is_public_ip(ip)
    {
        return Err(refused!(
            "{image} comes from a registry at a private or local address; base images must come from a public registry"
        ));
    }
    if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&registry)) {
        return Err(refused!(
            "{image} comes from {registry}, which this worker does not pull from (allowed: {}); use an image from one of those",
            allowed.join(", ")
        ));
    }
    Ok(ImageRef { registry, reference: image.to_string() })
}

/// A registry's host, port and brackets removed.
pub fn registry_host(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    registry.rsplit_once(':').map_or(registry, |(host, _)| host)
}

impl Pipeline {
    /// The repository's Containerfile may pull only from allowed registries, use no shared
    /// cache mount ([`containerfile::check`]), and name `localhost/` only for images this
    /// worker has (else podman would try a registry on the host).
    pub(super) async fn check_images(&self, path: &Path) -> Result<(), DeployError> {
        let text = tokio::fs::read(path)
            .await
            .map_err(|e| DeployError::user(format!("cannot read the Containerfile: {e}")))?;
        if text.len() > 1 << 20 {
            return Err(DeployError::user("the Containerfile is over 1 MiB; is dockerfile_path right?"));
        }
        let text =
            String::from_utf8(text).map_err(|_| DeployError::user("the Containerfile is not UTF-8 text"))?;
        let images =
            check(&text, &self.settings.base_image_registries).map_err(|e| DeployError::user(e.0))?;
        let mut looked = std::collections::HashSet::new();
        for image in images {
            let host = registry_host(&image.registry);
            if image.registry != "localhost"
                && host.parse::<IpAddr>().is_err()
                && looked.insert(host.to_string())
            {
                // A name that does not resolve is podman's to report; one that resolves to a
                // private address is refused here.
                let found = tokio::time::timeout(
                    Duration::from_secs(10),
                    resolve(host, 443, self.settings.dns_resolver),
                )
                .await;
                if let Ok(Ok(addrs)) = found
                    && addrs.iter().any(|ip| !is_public_ip(*ip))
                {
                    return Err(DeployError::user(format!(
                        "{} comes from {}, which resolves to a private or local address; base images must come from a public registry",
                        image.reference, image.registry
                    )));
                }
            }
            if image.registry == "localhost" && !self.podman.image_exists(&image.reference).await {
                return Err(DeployError::user(format!(
                    "{} is not an image on this worker; localhost/ names only images already built here",
                    image.reference
                )));
            }
        }
        Ok(())
    }
}

/// `podman build`'s resource limits: memory (no swap beyond it), CPU quota, and the cgroup
/// whose `pids.max` holds the process limit.
pub(super) fn build_limits(settings: &crate::config::DeploySettings, cgroup_parent: &str) -> Vec<String> {
    let memory = format!("{}m", settings.build_memory_mb);
    // Whole microseconds of a 100 ms period; at least 1 ms.
    let quota = ((settings.build_cpus * 100_000.0).round() as i64).max(1_000);
    vec![
        "--memory".into(),
        memory.clone(),
        "--memory-swap".into(),
        memory,
        "--cpu-period".into(),
        "100000".into(),
        "--cpu-quota".into(),
        quota.to_string(),
        "--cgroup-parent".into(),
        cgroup_parent.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        ["docker.io", "quay.io", "localhost"].map(String::from).to_vec()
    }

    #[test]
    fn images_from_allowed_registries_and_earlier_stages_pass() {
        let file = "# syntax comment\nARG BASE=node:20\nFROM --platform=linux/amd64 ${BASE} AS build\nRUN --mount=type=bind,from=build,target=/x \\\n  echo hi\nFROM quay.io/org/app:1\nCOPY --from=build /app /app\nCOPY --from=0 /a /a\nFROM localhost/wisehosting/busybox:latest\nFROM scratch\n";
        let images = check(file, &allowed()).expect("allowed");
        let refs: Vec<(&str, &str)> =
            images.iter().map(|i| (i.registry.as_str(), i.reference.as_str())).collect();
        assert_eq!(
            refs,
            [
                ("docker.io", "node:20"),
                ("quay.io", "quay.io/org/app:1"),
                ("localhost", "localhost/wisehosting/busybox:latest")
            ]
        );
    }

    #[test]
    fn images_from_other_or_private_registries_are_refused_by_name() {
        for (file, says) in [
            ("FROM evil.example/x:1\n", "comes from evil.example"),
            ("FROM 10.0.0.5:5000/x\n", "private or local address"),
            ("FROM [::1]:5000/x\n", "private or local address"),
            ("FROM 127.0.0.1/x\n", "private or local address"),
            ("FROM localhost:5000/x\n", "comes from localhost:5000"),
            ("FROM docker.io/x\nCOPY --from=ghcr.io/a/b /x /x\n", "comes from ghcr.io"),
            ("FROM docker.io/x\nRUN --mount=type=bind,from=10.1.1.1/y,target=/y true\n", "private"),
            ("ARG R\nFROM $R/x\n", "has no default"),
            ("FROM ${R:-evil.example}/x\n", "has no default"),
            ("FROM docker.io/x\nRUN --mount=type=cache,target=/root/.cache pip install x\n", "type=cache"),
            ("FROM docker.io/x\nRUN --mount=TYPE=Cache,target=/c \\\n true\n", "type=cache"),
            ("FROM\n", "names no image"),
        ] {
            let err = check(file, &allowed()).expect_err(file);
            assert!(err.0.contains(says), "{file}: {err}");
        }
    }
}
