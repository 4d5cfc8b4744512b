//! The services `up` started, in order: each a child in its own process
//! group with its log in an owner-only file, stopped in reverse order.
//!
//! Each service runs from its own binary (`portcullis-gateway` and so on,
//! built beside this one) when that is from the same build: the kernel maps
//! 64 KiB of an executable around each page a process touches, so a gateway
//! run from this binary, which holds all three services' code, kept far
//! more of it resident than one run from a binary holding only its own.
//! Otherwise (`cargo run` builds only the binary it runs) this binary runs
//! the service itself.

use super::*;

/// The services started so far, in order.
#[derive(Default)]
pub(super) struct Stack {
    pub(super) logs: PathBuf,
    children: Vec<Service>,
    /// The program that runs each service, once resolved.
    programs: Vec<(&'static str, Program)>,
}

/// A binary and the command it needs to run one service.
#[derive(Clone)]
struct Program {
    path: PathBuf,
    command: Option<&'static str>,
}

struct Service {
    name: &'static str,
    process: tokio::process::Child,
    log: PathBuf,
}

impl Stack {
    pub(super) fn spawn<A>(
        &mut self,
        name: &'static str,
        command: &'static str,
        args: impl IntoIterator<Item = A>,
        env: &[(&str, OsString)],
    ) -> anyhow::Result<()>
    where
        A: Into<OsString>,
    {
        let log = self.logs.join(format!("{}.log", name.replace(' ', "-")));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&log)
            .with_context(|| format!("cannot create `{}`", log.display()))?;
        let program = self.program(command)?;
        let mut process = tokio::process::Command::new(&program.path);
        // The stack is what `up` says it is: no inherited overrides (they
        // could move a listener off loopback or change the database).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PORTCULLIS_") {
                process.env_remove(key);
            }
        }
        let process = process
            .args(program.command)
            .args(args.into_iter().map(Into::into))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        self.children.push(Service { name, process, log });
        Ok(())
    }

    /// The program that runs `service`: the one-service binary beside this
    /// one if it answers with this build's id, else this binary.
    fn program(&mut self, service: &'static str) -> anyhow::Result<Program> {
        if let Some((_, known)) = self.programs.iter().find(|(s, _)| *s == service) {
            return Ok(known.clone());
        }
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let own = exe.with_file_name(format!("portcullis-{service}"));
        let answer = std::process::Command::new(&own)
            .arg(crate::build_id::FLAG)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        let program = match answer {
            Ok(out)
                if out.status.success()
                    && out.stdout.trim_ascii() == crate::build_id::BUILD_ID.as_bytes() =>
            {
                Program {
                    path: own,
                    command: None,
                }
            }
            answer => {
                if answer.is_ok() {
                    eprintln!(
                        "note: `{}` is from another build; running the {service} from this binary \
                         (`cargo build --release -p portcullis` builds both)",
                        own.display()
                    );
                }
                Program {
                    path: exe,
                    command: Some(service),
                }
            }
        };
        self.programs.push((service, program.clone()));
        Ok(program)
    }

    /// Waits until `url` answers 2xx, failing early if the service exits.
    pub(super) async fn ready(&mut self, name: &str, url: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(service) = self.children.iter_mut().find(|s| s.name == name)
                && let Some(status) = service.process.try_wait()?
            {
                bail!(
                    "the {name} exited at start ({status}); its log `{}`:\n{}",
                    service.log.display(),
                    tail(&service.log)
                );
            }
            if let Ok(response) = client.get(url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the {name} was not ready at {url} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Each running service's pid, by name (for scripts and load runners).
    pub(super) fn pids(&self) -> Value {
        self.children
            .iter()
            .filter_map(|s| Some((s.name.replace(' ', "_"), json!(s.process.id()?))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// SIGKILL to every service still running.
    pub(super) async fn kill(&mut self) {
        for service in &mut self.children {
            let _ = service.process.kill().await;
        }
        self.children.clear();
    }

    /// The first service to exit on its own.
    pub(super) async fn first_exit(&mut self) -> (&'static str, ExitStatus, PathBuf) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            for service in &mut self.children {
                if let Ok(Some(status)) = service.process.try_wait() {
                    return (service.name, status, service.log.clone());
                }
            }
        }
    }

    /// SIGTERM to each service, the last started first; SIGKILL to one
    /// that has not exited within `STOP_TIMEOUT`.
    pub(super) async fn stop(&mut self) {
        while let Some(mut service) = self.children.pop() {
            if let Ok(Some(_)) = service.process.try_wait() {
                continue;
            }
            if let Some(pid) = service.process.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            match tokio::time::timeout(STOP_TIMEOUT, service.process.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!(
                        "the {} did not stop within {STOP_TIMEOUT:?}; killing it",
                        service.name
                    );
                    let _ = service.process.kill().await;
                }
            }
        }
    }
}

/// The last lines of a log, for an error message.
pub(super) fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
