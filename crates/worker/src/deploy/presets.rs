//! Build presets (SPEC §6, issue 17): what `framework: auto` finds in a checkout, and the
//! Containerfile each language preset generates — written in the work dir beside the checkout,
//! never inside it, from the worker's configured base images (`deploy.node_image`, …;
//! production defaults are the official images, tests use local ones from
//! `scripts/preset-images.sh`).
//!
//! Language builds keep their package caches in a directory of the app's own on the worker,
//! mounted into the build's `RUN` steps at [`CACHE_MOUNT`] (npm, pip, Go's module and build
//! caches, cargo's registry and target dir): a second build reuses what the first fetched
//! and compiled, and no app ever sees another's cache. Since a build's `RUN` output then
//! depends on more than podman's layer-cache key (the cache's contents), every layer after
//! `FROM` is made the app's own (`ENV WISEHOSTING_CACHE_SCOPE=<app>`): another app with the
//! same files never reuses a layer built with this app's cache, which it could have poisoned.

use std::path::Path;

use wisehosting_proto::job::{DockerfilePath, Framework};

use super::error::DeployError;
use crate::config::DeploySettings;

/// Where an app's build cache is mounted during its build's `RUN` steps.
pub const CACHE_MOUNT: &str = "/wh-cache";

/// What decides a preset, in order: a Containerfile of the repository's own wins.
const MARKERS: [(&str, Framework); 9] = [
    ("Containerfile", Framework::Dockerfile),
    ("Dockerfile", Framework::Dockerfile),
    ("package.json", Framework::Node),
    ("requirements.txt", Framework::Python),
    ("pyproject.toml", Framework::Python),
    ("go.mod", Framework::Go),
    ("Cargo.toml", Framework::Rust),
    ("index.html", Framework::Static),
    ("index.htm", Framework::Static),
];

/// Whether `framework` is one of the language presets (with a generated Containerfile and a
/// build cache).
pub fn is_language(framework: Framework) -> bool {
    matches!(framework, Framework::Node | Framework::Python | Framework::Go | Framework::Rust)
}

/// A regular file (not a link, not a directory) at the checkout's top.
fn has_file(src: &Path, name: &str) -> bool {
    std::fs::symlink_metadata(src.join(name)).is_ok_and(|m| m.file_type().is_file())
}

/// The framework to build with: `framework` itself, or for `auto` the first marker found
/// (with the file that decided it). A configured `dockerfile_path` means the Containerfile.
pub fn resolve(
    framework: Framework,
    src: &Path,
    dockerfile_path: Option<&DockerfilePath>,
) -> Result<(Framework, Option<&'static str>), DeployError> {
    if framework != Framework::Auto {
        return Ok((framework, None));
    }
    if dockerfile_path.is_some() {
        return Ok((Framework::Dockerfile, Some("dockerfile_path")));
    }
    MARKERS.iter().find(|(name, _)| has_file(src, name)).map(|(name, f)| (*f, Some(*name))).ok_or_else(|| {
        DeployError::user(
            "framework auto found none of Containerfile, Dockerfile, package.json, requirements.txt, pyproject.toml, go.mod, Cargo.toml or index.html at the repository's top; add one, or choose the framework",
        )
    })
}

/// The Containerfile of a language preset for the checkout `src`.
pub fn containerfile(
    framework: Framework,
    settings: &DeploySettings,
    src: &Path,
    port: u16,
    scope: &str,
) -> Result<String, DeployError> {
    let cache = CACHE_MOUNT;
    let scope = format!("ENV WISEHOSTING_CACHE_SCOPE={scope}");
    // Go and Rust: built in the toolchain image (binaries into /out/bin), run from the runtime
    // image.
    let compiled = |image: &str, env: &str, build: &str, cmd: &str| {
        format!(
            "FROM {image} AS build\n{scope}\nWORKDIR /src\nENV {env}\nCOPY . .\nRUN {build}\nFROM {runtime}\nWORKDIR /app\nCOPY --from=build /out/bin /app/bin\nENV PORT={port}\nEXPOSE {port}\nCMD {cmd}\n",
            runtime = settings.runtime_image,
        )
    };
    Ok(match framework {
        Framework::Node => {
            if !has_file(src, "package.json") {
                return Err(DeployError::user(
                    "the node preset needs a package.json at the repository's top; add one, or choose another framework",
                ));
            }
            // The app's cache answers what it holds without asking the registry again.
            let install = if has_file(src, "package-lock.json") || has_file(src, "npm-shrinkwrap.json") {
                "npm ci --prefer-offline"
            } else {
                "npm install --prefer-offline"
            };
            format!(
                "FROM {image}\n\
                 {scope}\n\
                 WORKDIR /app\n\
                 ENV npm_config_cache={cache}/npm npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false\n\
                 COPY package*.json ./\n\
                 RUN {install}\n\
                 COPY . .\n\
                 RUN npm run build --if-present\n\
                 ENV NODE_ENV=production PORT={port}\n\
                 EXPOSE {port}\n\
                 CMD [\"npm\", \"start\"]\n",
                image = settings.node_image,
            )
        }
        Framework::Python => {
            let install = if has_file(src, "requirements.txt") {
                "/venv/bin/pip install -r requirements.txt"
            } else if has_file(src, "pyproject.toml") {
                "/venv/bin/pip install ."
            } else {
                return Err(DeployError::user(
                    "the python preset needs a requirements.txt or pyproject.toml at the repository's top; add one, or choose another framework",
                ));
            };
            let main = ["app.py", "main.py", "server.py"].into_iter().find(|f| has_file(src, f));
            let cmd = match main {
                Some(main) => format!("[\"/venv/bin/python\", \"{main}\"]"),
                None if has_file(src, "Procfile") => {
                    "[\"/bin/sh\", \"-c\", \"echo 'the Procfile has no web: line' >&2; exit 1\"]".into()
                }
                None => {
                    return Err(DeployError::user(
                        "the python preset does not know how to start this app: add a Procfile with `web: <command>` (e.g. `web: gunicorn app:app`), or an app.py, main.py or server.py",
                    ));
                }
            };
            format!(
                "FROM {image}\n\
                 {scope}\n\
                 WORKDIR /app\n\
                 ENV PIP_CACHE_DIR={cache}/pip PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1\n\
                 RUN python3 -m venv /venv\n\
                 COPY . .\n\
                 RUN {install}\n\
                 ENV PATH=/venv/bin:$PATH PORT={port}\n\
                 EXPOSE {port}\n\
                 CMD {cmd}\n",
                image = settings.python_image,
            )
        }
        Framework::Go => compiled(
            &settings.go_image,
            &format!(
                "GOCACHE={cache}/go-build GOMODCACHE={cache}/go-mod CGO_ENABLED=0 GOFLAGS=-buildvcs=false"
            ),
            "go build -o /out/bin/app .",
            "[\"/app/bin/app\"]",
        ),
        Framework::Rust => compiled(
            &settings.rust_image,
            &format!("CARGO_HOME={cache}/cargo CARGO_TARGET_DIR={cache}/target"),
            "cargo install --path . --root /out",
            "[\"/bin/sh\", \"-c\", \"set -- /app/bin/*; [ $# -eq 1 ] || { echo 'the crate has several binaries; name the one to run in a Procfile (web: /app/bin/<name>)' >&2; exit 1; }; exec \\\"$1\\\"\"]",
        ),
        Framework::Dockerfile | Framework::Static | Framework::Auto => {
            return Err(DeployError::platform(format!("{} is not a language preset", framework.as_str())));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("dir");
        for f in files {
            std::fs::write(dir.path().join(f), "x").expect("write");
        }
        dir
    }

    #[test]
    fn auto_picks_the_first_marker_and_names_it() {
        for (files, framework, marker) in [
            (&["package.json", "requirements.txt"][..], Framework::Node, "package.json"),
            (&["Dockerfile", "package.json"][..], Framework::Dockerfile, "Dockerfile"),
            (&["pyproject.toml"][..], Framework::Python, "pyproject.toml"),
            (&["go.mod", "index.html"][..], Framework::Go, "go.mod"),
            (&["Cargo.toml"][..], Framework::Rust, "Cargo.toml"),
            (&["index.html"][..], Framework::Static, "index.html"),
        ] {
            let dir = checkout(files);
            assert_eq!(resolve(Framework::Auto, dir.path(), None).expect("found"), (framework, Some(marker)));
        }
        let dir = checkout(&["README.md"]);
        let err = resolve(Framework::Auto, dir.path(), None).expect_err("nothing").to_string();
        assert!(err.contains("framework auto found none of"), "{err}");
        assert_eq!(resolve(Framework::Go, dir.path(), None).expect("as asked"), (Framework::Go, None));
    }

    #[test]
    fn a_marker_that_is_a_link_or_a_directory_decides_nothing() {
        let dir = checkout(&[]);
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("package.json")).expect("link");
        std::fs::create_dir(dir.path().join("go.mod")).expect("dir");
        std::fs::write(dir.path().join("Cargo.toml"), "x").expect("write");
        assert_eq!(resolve(Framework::Auto, dir.path(), None).expect("found").0, Framework::Rust);
    }

    #[test]
    fn presets_use_the_configured_images_and_the_apps_cache() {
        let settings = DeploySettings::default();
        let dir = checkout(&["package.json", "package-lock.json"]);
        let node = containerfile(Framework::Node, &settings, dir.path(), 3000, "wh-app7").expect("node");
        assert!(
            node.starts_with(&format!("FROM {}\nENV WISEHOSTING_CACHE_SCOPE=wh-app7\n", settings.node_image)),
            "{node}"
        );
        assert!(
            node.contains("RUN npm ci --prefer-offline\n") && node.contains("npm_config_cache=/wh-cache/npm"),
            "{node}"
        );
        let dir = checkout(&["requirements.txt", "app.py"]);
        let python =
            containerfile(Framework::Python, &settings, dir.path(), 8000, "wh-app7").expect("python");
        assert!(
            python.contains("pip install -r requirements.txt")
                && python.contains("CMD [\"/venv/bin/python\", \"app.py\"]"),
            "{python}"
        );
        let dir = checkout(&["requirements.txt"]);
        let err = containerfile(Framework::Python, &settings, dir.path(), 8000, "wh-app7")
            .expect_err("no start")
            .to_string();
        assert!(err.contains("add a Procfile with `web: <command>`"), "{err}");
        let go = containerfile(Framework::Go, &settings, dir.path(), 8080, "wh-app7").expect("go");
        assert!(
            go.contains(&format!("FROM {}\n", settings.runtime_image))
                && go.contains("GOMODCACHE=/wh-cache/go-mod"),
            "{go}"
        );
        let rust = containerfile(Framework::Rust, &settings, dir.path(), 8080, "wh-app7").expect("rust");
        assert!(rust.contains("CARGO_HOME=/wh-cache/cargo") && rust.contains(&settings.rust_image), "{rust}");
        let err = containerfile(Framework::Node, &settings, dir.path(), 1, "wh-app7")
            .expect_err("no package.json")
            .to_string();
        assert!(err.contains("needs a package.json"), "{err}");
    }
}
