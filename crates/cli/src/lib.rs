//! `wh`, the developer's command line (SPEC §14.6): sign in once with an API token, then list,
//! create, deploy (following the build log), read logs, set env, manage domains, roll back,
//! restart, stop, start and open apps.
//!
//! Exit codes scripts can trust: 0 done; 1 the operation failed (a deployment failed, the
//! platform refused); 2 bad usage (a wrong argument, not a URL); 3 not signed in or the token
//! refused; 4 the platform did not answer. Errors are one line on standard error; listings
//! take `--json`; colours only on a terminal.
//!
//! - [`config`]: the stored login (mode 0600) and `WH_URL`/`WH_TOKEN`.
//! - [`api`]: the user API client.

pub mod api;
pub mod config;
mod output;

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use api::Api;

#[derive(Debug, Parser)]
#[command(name = "wh", version, about = "WiseHosting from the command line")]
pub struct Cli {
    /// Print listings as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Signs in: checks the URL and the token with the platform, then keeps them (mode 0600).
    /// Without --token, the token is read from standard input (keeps it out of `ps`).
    Login {
        /// The platform's URL, e.g. https://wisehosting.example.com.
        #[arg(long)]
        url: String,
        /// An API token (`wht_…`) from the dashboard's Account page.
        #[arg(long)]
        token: Option<String>,
    },
    /// Forgets the stored login.
    Logout,
    /// Lists your apps.
    Apps,
    /// Creates an app from a repository and deploys it, following the build.
    Create {
        name: String,
        /// The repository: https://…, or a local path in single-machine mode.
        #[arg(long)]
        repo: String,
        #[arg(long, default_value = "main")]
        branch: String,
        /// auto, dockerfile, static, node, python, go or rust (the platform's default, dockerfile,
        /// when left out).
        #[arg(long)]
        framework: Option<String>,
        /// Clone with your linked account at this provider (github, gitlab, bitbucket, codeberg;
        /// link it on the dashboard's account page); registers the push webhook too.
        #[arg(long)]
        git_provider: Option<String>,
        /// The port the app listens on in its container.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Environment variables, `KEY=value` (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Return once the deployment is queued.
        #[arg(long)]
        no_follow: bool,
    },
    /// Deploys the app's branch again (or one commit), following the build log; exits 0 only
    /// when the new version runs.
    Deploy {
        app: String,
        #[arg(long)]
        commit: Option<String>,
        #[arg(long)]
        no_follow: bool,
    },
    /// Prints the app's newest log lines; with -f, follows them until Ctrl-C.
    Logs {
        app: String,
        #[arg(short = 'f', long)]
        follow: bool,
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
    /// Lists the app's environment variable names, or sets or unsets some. Values are never
    /// printed.
    Env {
        app: String,
        #[command(subcommand)]
        action: Option<EnvAction>,
    },
    /// Lists the app's custom domains, or adds, removes or verifies one.
    Domains {
        app: String,
        #[command(subcommand)]
        action: Option<DomainAction>,
    },
    /// Runs an earlier deployment again (its image when the worker keeps it), following it.
    Rollback {
        app: String,
        /// The deployment's number (`wh deployments` in the dashboard, or `#N` in build output).
        deployment: i64,
        #[arg(long)]
        no_follow: bool,
    },
    /// Restarts the running version.
    Restart { app: String },
    /// Stops the app.
    Stop { app: String },
    /// Starts the stopped app.
    Start { app: String },
    /// Prints the app's URL, and opens it in a browser on a desktop.
    Open { app: String },
    /// Where API tokens are made and revoked (a token cannot manage tokens).
    Tokens,
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
enum EnvAction {
    /// Sets variables: `KEY=value …` (applies on the next deploy or restart).
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
    /// Removes variables by name.
    Unset {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DomainAction {
    Add { hostname: String },
    Rm { hostname: String },
    Verify { hostname: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("not signed in: run `wh login --url <URL>` with an API token (or set WH_URL and WH_TOKEN)")]
    NotLoggedIn,
    #[error(
        "the platform refused the token ({0}); make a new one on the dashboard's Account page and run `wh login` again"
    )]
    Unauthorized(String),
    #[error("{url} did not answer ({reason}); check the URL (`wh login --url …`) and that the platform runs")]
    Unreachable { url: String, reason: String },
    #[error("{message}")]
    Api { code: String, message: String },
    #[error("{0}")]
    Failed(String),
    #[error("cannot use the login file {path}: {reason}")]
    Config { path: String, reason: String },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::NotLoggedIn | CliError::Unauthorized(_) => 3,
            CliError::Unreachable { .. } => 4,
            CliError::Api { .. } | CliError::Failed(_) | CliError::Config { .. } => 1,
        }
    }
}

/// Runs the command on a fresh runtime; an error is one line on standard error.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}", output::error_line(&format!("cannot start: {e}")));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", output::error_line(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

fn signed_in() -> Result<Api, CliError> {
    let login = config::load()?.ok_or(CliError::NotLoggedIn)?;
    Api::new(&login.url, &login.token)
}

/// An app of yours by id, slug or name (any case): its row in `/api/me`.
async fn find_app(api: &Api, wanted: &str) -> Result<Value, CliError> {
    let me = api.get("/api/me").await?;
    let apps = me["apps"].as_array().cloned().unwrap_or_default();
    let lower = wanted.to_lowercase();
    apps.into_iter()
        .find(|a| {
            a["id"].as_i64().is_some_and(|id| id.to_string() == wanted)
                || a["slug"].as_str() == Some(wanted)
                || a["name"].as_str().is_some_and(|n| n.to_lowercase() == lower)
        })
        .ok_or_else(|| CliError::Failed(format!("you have no app named {wanted:?}; `wh apps` lists yours")))
}

fn app_id(app: &Value) -> i64 {
    app["id"].as_i64().unwrap_or_default()
}

fn parse_pair(pair: &str) -> Result<(String, String), CliError> {
    let (k, v) = pair.split_once('=').ok_or_else(|| {
        CliError::Usage(format!(
            "{:?} is not KEY=value; write it like DATABASE_URL=postgres://…",
            pair.chars().take(40).collect::<String>()
        ))
    })?;
    let ok = k.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && k.len() <= 64
        && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(CliError::Usage(format!(
            "{k:?} is not a variable name; use A-Z, 0-9 and _, starting with a letter"
        )));
    }
    Ok((k.to_string(), v.to_string()))
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let json_out = cli.json;
    match cli.command {
        Command::Login { url, token } => login(&url, token).await,
        Command::Logout => {
            if config::remove()? {
                println!("Signed out: the stored login is gone.");
            } else {
                println!("There was no stored login.");
            }
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "wh", &mut std::io::stdout());
            Ok(())
        }
        Command::Apps => {
            let api = signed_in()?;
            let me = api.get("/api/me").await?;
            let apps = me["apps"].as_array().cloned().unwrap_or_default();
            if json_out {
                output::json(&Value::Array(apps));
            } else if apps.is_empty() {
                println!("No apps yet: `wh create <name> --repo <URL>` makes one.");
            } else {
                let rows: Vec<Vec<String>> = apps
                    .iter()
                    .map(|a| {
                        vec![
                            a["name"].as_str().unwrap_or("").to_string(),
                            a["status"].as_str().unwrap_or("").to_string(),
                            a["url"].as_str().unwrap_or("").to_string(),
                            a["last_deployment"]["id"].as_i64().map_or("—".into(), |d| format!("#{d}")),
                        ]
                    })
                    .collect();
                output::table(&["name", "status", "url", "last deploy"], &rows);
            }
            Ok(())
        }
        Command::Create { name, repo, branch, framework, git_provider, port, env, no_follow } => {
            let api = signed_in()?;
            let env: serde_json::Map<String, Value> = env
                .iter()
                .map(|p| parse_pair(p).map(|(k, v)| (k, Value::String(v))))
                .collect::<Result<_, _>>()?;
            let mut body =
                json!({ "name": name, "repo_url": repo, "branch": branch, "port": port, "env": env });
            if let Some(p) = git_provider {
                body["git_provider"] = json!(p);
            }
            if let Some(f) = framework {
                body["framework"] = json!(f);
            }
            let created = api.post("/api/deploy", &body).await?;
            let id = created["deployment"]["id"].as_i64().unwrap_or_default();
            println!("Created {name}; deployment #{id} is queued.");
            if let Some(webhook) = created["webhook"].as_str() {
                println!("Push webhook: {webhook}.");
            }
            if no_follow { Ok(()) } else { follow(&api, id).await }
        }
        Command::Deploy { app, commit, no_follow } => {
            let api = signed_in()?;
            let app = find_app(&api, &app).await?;
            let body = match commit {
                Some(c) => json!({ "commit": c }),
                None => json!({}),
            };
            let d = api.post(&format!("/api/apps/{}/deployments", app_id(&app)), &body).await?;
            let id = d["id"].as_i64().unwrap_or_default();
            println!("Deploying {}: deployment #{id}.", app["name"].as_str().unwrap_or(""));
            if no_follow { Ok(()) } else { follow(&api, id).await }
        }
        Command::Rollback { app, deployment, no_follow } => {
            let api = signed_in()?;
            let app = find_app(&api, &app).await?;
            let d = api
                .post(
                    &format!("/api/apps/{}/rollback", app_id(&app)),
                    &json!({ "deployment_id": deployment }),
                )
                .await?;
            let id = d["id"].as_i64().unwrap_or_default();
            println!("Rolling back to #{deployment}: deployment #{id}.");
            if no_follow { Ok(()) } else { follow(&api, id).await }
        }
        Command::Logs { app, follow: live, tail } => {
            let api = signed_in()?;
            let app = find_app(&api, &app).await?;
            let id = app_id(&app);
            let lines = api.get(&format!("/api/apps/{id}/logs?tail={}", tail.clamp(1, 1000))).await?;
            for line in lines["lines"].as_array().into_iter().flatten() {
                println!("{}", line["line"].as_str().unwrap_or(""));
            }
            if live { stream_logs(&api, id).await } else { Ok(()) }
        }
        Command::Env { app, action } => {
            let api = signed_in()?;
            let app = find_app(&api, &app).await?;
            env(&api, app_id(&app), action, json_out).await
        }
        Command::Domains { app, action } => {
            let api = signed_in()?;
            let app = find_app(&api, &app).await?;
            domains(&api, app_id(&app), action, json_out).await
        }
        Command::Restart { app } => lifecycle(&app, "restart", "A restart").await,
        Command::Stop { app } => lifecycle(&app, "stop", "Stopping").await,
        Command::Start { app } => lifecycle(&app, "start", "Starting").await,
        Command::Open { app } => {
            let api = signed_in()?;
            let app = find_app(&api, &app).await?;
            let url = app["url"].as_str().unwrap_or("").to_string();
            println!("{url}");
            if std::io::stdout().is_terminal() && std::env::var_os("DISPLAY").is_some() {
                // A browser, if there is one; argv only.
                let _ = std::process::Command::new("xdg-open")
                    .arg(&url)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
            }
            Ok(())
        }
        Command::Tokens => {
            let api = signed_in()?;
            println!(
                "API tokens are made and revoked on the dashboard's Account page: {}/account",
                api.base()
            );
            println!("(a token cannot list or make tokens: that needs a browser session)");
            Ok(())
        }
    }
}

async fn login(url: &str, token: Option<String>) -> Result<(), CliError> {
    api::parse_base(url)?;
    let token = match token {
        Some(t) => t,
        None => {
            if std::io::stdin().is_terminal() {
                eprint!("API token (wht_…): ");
            }
            let mut text = String::new();
            std::io::stdin()
                .take(4096)
                .read_to_string(&mut text)
                .map_err(|e| CliError::Usage(format!("cannot read the token from standard input: {e}")))?;
            text.lines().next().unwrap_or("").trim().to_string()
        }
    };
    if !token.starts_with("wht_") {
        return Err(CliError::Usage(
            "that is not an API token (they start with wht_); make one on the dashboard's Account page"
                .into(),
        ));
    }
    let api = Api::new(url, &token)?;
    let me = api.get("/api/me").await?;
    let email = me["user"]["email"].as_str().unwrap_or("?").to_string();
    let path = config::save(&config::Login { url: api.base().to_string(), token })?;
    println!(
        "{} Signed in to {} as {email}; the login is kept in {}.",
        output::green("✓"),
        api.base(),
        path.display()
    );
    Ok(())
}

/// Follows a deployment: its build log as it grows, its status on a spinner (on a terminal);
/// Ok only when it runs.
async fn follow(api: &Api, deployment: i64) -> Result<(), CliError> {
    let spinner = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(bar)
    } else {
        None
    };
    let say = |line: &str| match &spinner {
        Some(bar) => bar.println(line),
        None => println!("{line}"),
    };
    let mut printed = 0usize;
    loop {
        let (log_path, path) =
            (format!("/api/deployments/{deployment}/log"), format!("/api/deployments/{deployment}"));
        let (log, d) = tokio::try_join!(api.get(&log_path), api.get(&path))?;
        let text = log["log"].as_str().unwrap_or("");
        if text.len() < printed {
            printed = 0;
        }
        if let Some(new) = text.get(printed..) {
            let complete = new.rfind('\n').map_or(0, |i| i + 1);
            for line in new[..complete].lines() {
                say(line);
            }
            printed += complete;
        }
        let status = d["status"].as_str().unwrap_or("").to_string();
        if let Some(bar) = &spinner {
            bar.set_message(format!("deployment #{deployment}: {}", status.replace('_', " ")));
        }
        match status.as_str() {
            "running" | "superseded" => {
                if let Some(rest) = text.get(printed..).filter(|r| !r.is_empty()) {
                    say(rest);
                }
                if let Some(bar) = &spinner {
                    bar.finish_and_clear();
                }
                println!("{} deployment #{deployment} is {status}", output::green("✓"));
                return Ok(());
            }
            "failed" | "cancelled" => {
                if let Some(bar) = &spinner {
                    bar.finish_and_clear();
                }
                let why = d["error"].as_str().unwrap_or("no reason given");
                let first = why.lines().next().unwrap_or(why);
                return Err(CliError::Failed(format!("deployment #{deployment} {status}: {first}")));
            }
            _ => tokio::time::sleep(Duration::from_millis(700)).await,
        }
    }
}

/// `logs -f`: the app's server-sent events until Ctrl-C or the stream's end.
async fn stream_logs(api: &Api, app: i64) -> Result<(), CliError> {
    let mut response = api.stream(&format!("/api/apps/{app}/logs/stream")).await?;
    let mut pending = String::new();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(bytes) = chunk.map_err(|e| CliError::Failed(format!("the log stream broke: {e}")))? else {
            return Ok(());
        };
        pending.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data:")) {
                let line: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                if let Some(text) = line["line"].as_str() {
                    println!("{text}");
                }
            }
        }
    }
}

async fn env(api: &Api, app: i64, action: Option<EnvAction>, json_out: bool) -> Result<(), CliError> {
    let path = format!("/api/apps/{app}/env");
    let Some(action) = action else {
        let current = api.get(&path).await?;
        let names: Vec<String> =
            current["env"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        if json_out {
            output::json(&json!(names));
        } else if names.is_empty() {
            println!("No variables: `wh env <app> set KEY=value` sets one.");
        } else {
            for name in names {
                println!("{name}");
            }
        }
        return Ok(());
    };
    // The API replaces the whole set: read the values (audited as revealed), change, write.
    let current = api.get(&format!("{path}?reveal=true")).await?;
    let mut env = current["env"].as_object().cloned().unwrap_or_default();
    let changed: Vec<String> = match action {
        EnvAction::Set { pairs } => {
            let pairs = pairs.iter().map(|p| parse_pair(p)).collect::<Result<Vec<_>, _>>()?;
            pairs
                .into_iter()
                .map(|(k, v)| {
                    env.insert(k.clone(), Value::String(v));
                    k
                })
                .collect()
        }
        EnvAction::Unset { names } => {
            for name in &names {
                if env.remove(name).is_none() {
                    return Err(CliError::Failed(format!(
                        "the app has no variable {name}; `wh env <app>` lists them"
                    )));
                }
            }
            names
        }
    };
    api.call(Method::PUT, &path, Some(&Value::Object(env))).await?;
    println!(
        "{} {}; this applies on the next deploy or restart (`wh restart <app>`).",
        output::green("✓"),
        changed.join(", ")
    );
    Ok(())
}

async fn domains(api: &Api, app: i64, action: Option<DomainAction>, json_out: bool) -> Result<(), CliError> {
    let base = format!("/api/apps/{app}/domains");
    let encode = |h: &str| url::form_urlencoded::byte_serialize(h.as_bytes()).collect::<String>();
    match action {
        None => {
            let list = api.get(&base).await?;
            if json_out {
                output::json(&list);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    vec![
                        d["hostname"].as_str().unwrap_or("").to_string(),
                        d["status"].as_str().unwrap_or("").to_string(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("No custom domains: `wh domains <app> add <hostname>` adds one.");
            } else {
                output::table(&["hostname", "status"], &rows);
            }
        }
        Some(DomainAction::Add { hostname }) => {
            let d = api.post(&base, &json!({ "hostname": hostname })).await?;
            println!(
                "{} Added {hostname}. Publish this DNS record, then `wh domains <app> verify {hostname}`:",
                output::green("✓")
            );
            let record = &d["verification"];
            for (label, key) in [("type", "type"), ("name", "name"), ("value", "value")] {
                println!("  {label:<5}  {}", record[key].as_str().unwrap_or("?"));
            }
        }
        Some(DomainAction::Rm { hostname }) => {
            api.call(Method::DELETE, &format!("{base}/{}", encode(&hostname)), None).await?;
            println!("{} Removed {hostname}.", output::green("✓"));
        }
        Some(DomainAction::Verify { hostname }) => {
            let d = api.post(&format!("{base}/{}/verify", encode(&hostname)), &json!({})).await?;
            println!("{} {hostname} is verified and routed to the app.", output::green("✓"));
            if json_out {
                output::json(&d);
            }
        }
    }
    Ok(())
}

async fn lifecycle(app: &str, action: &str, what: &str) -> Result<(), CliError> {
    let api = signed_in()?;
    let app = find_app(&api, app).await?;
    let queued = api.post(&format!("/api/apps/{}/{action}", app_id(&app)), &json!({})).await?;
    println!(
        "{} {what} of {} is queued (job {}).",
        output::green("✓"),
        app["name"].as_str().unwrap_or(""),
        queued["job_id"]
    );
    Ok(())
}
