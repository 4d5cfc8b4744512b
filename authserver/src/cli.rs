//! `authserver`: serve, or manage users, clients and keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::admin::{self, ClientKind, ClientSpec, UserSpec};
use crate::app::{App, now};
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::error::Error;
use crate::model::{Actor, MfaPolicy, User};
use bootstrap::EXIT_CONFIG;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "authserver",
    version,
    about = "Portcullis OAuth 2.0 / OpenID Connect provider"
)]
struct Cli {
    /// TOML config file; `PORTCULLIS_AUTHSERVER__*` variables override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Database URL, `postgres://…` or `sqlite:…` (overrides `database_url`).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Redis URL (overrides `redis_url`); unset keeps ephemeral state in-process.
    #[arg(long, global = true)]
    redis_url: Option<String>,
    /// Dev mode: plain HTTP on loopback, a generated master key under the data
    /// directory, demo accounts printed at start.
    #[arg(long, global = true)]
    dev: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the provider (default 127.0.0.1:8080).
    Serve {
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// With --dev: also write the demo credentials, with the issuer, as JSON.
        #[arg(long)]
        dev_credentials: Option<PathBuf>,
        /// Validate the config, then exit.
        #[arg(long)]
        check: bool,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage signing keys and the master key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage service tokens (SCIM provisioning, change-feed followers).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token; it is printed once (only its keyed digest is kept).
    Add {
        name: String,
        /// `scim` (provisioning) and/or `feed` (following the change feed).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List the tokens (never the tokens themselves).
    List,
    /// Remove a token: it stops working at once.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from standard input.
    Add {
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List users.
    List,
    /// Show a user's second factors (never their secrets).
    Factors { username: String },
    /// Remove every second factor and recovery code of a user (audited).
    ResetFactors { username: String },
    /// Require a second factor of a user, or make it optional again.
    Mfa {
        username: String,
        #[arg(value_enum)]
        policy: Policy,
    },
}

/// `mfa = optional | required`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Policy {
    Optional,
    Required,
}

impl From<Policy> for MfaPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Optional => Self::Optional,
            Policy::Required => Self::Required,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Web,
    Public,
    Service,
    Device,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a client; its secret (if any) is printed once.
    Add {
        client_id: String,
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Authenticate with private_key_jwt using this JWK Set file.
        #[arg(long)]
        jwks_file: Option<PathBuf>,
        /// A resource server: may introspect any token of this issuer.
        #[arg(long)]
        introspect: bool,
        /// Where logout tokens are POSTed when a session this client was
        /// issued tokens in ends (OIDC Back-Channel Logout 1.0).
        #[arg(long)]
        backchannel_logout_uri: Option<String>,
    },
    /// List clients.
    List,
    /// Require a second factor of everyone signing in to a client.
    Mfa {
        client_id: String,
        #[arg(value_enum)]
        policy: Policy,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Promote the pre-published next key, retire the active one, publish a
    /// new next key, drop retired keys whose tokens have expired.
    Rotate {
        /// Rotate even if the next key was published too recently for every
        /// verifier to have fetched it.
        #[arg(long)]
        force: bool,
    },
    /// Print a new random master key (base64).
    Master,
}

/// Runs the command line `args` (the first is the program name) to an exit code.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    if let Command::Keys(KeysCommand::Master) = cli.command {
        return match MasterKey::generate() {
            Ok((_, text)) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    config.dev = cli.dev;
    config.database_url = cli.database_url.or(config.database_url);
    config.redis_url = cli.redis_url.or(config.redis_url);
    if let Command::Serve {
        listen: Some(listen),
        ..
    } = &cli.command
    {
        config.listen = *listen;
    }
    if config.dev && !config.listen.ip().is_loopback() {
        eprintln!(
            "error: --dev serves plain HTTP and only on a loopback address, not {}",
            config.listen
        );
        return ExitCode::from(EXIT_CONFIG as u8);
    }
    if let Err(e) = config.validate() {
        return config_error(&e);
    }
    if let Command::Serve { check: true, .. } = cli.command {
        println!("config OK");
        return ExitCode::SUCCESS;
    }
    let traces =
        match bootstrap::telemetry::Tracing::start(&config.tracing, "portcullis-authserver") {
            Ok(t) => t,
            Err(e) => return fail(&e),
        };
    bootstrap::telemetry::init_logging(&config.log_level, config.log_format, traces.as_ref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(run(config, cli.command)) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn config_error(e: &bootstrap::ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_CONFIG as u8)
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

fn master_key(config: &Config) -> Result<MasterKey, Error> {
    if let Some(text) = &config.master_key {
        return Ok(MasterKey::from_base64(text)?);
    }
    if let Some(path) = &config.master_key_file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: format!("master_key_file `{}`", path.display()),
            source,
        })?;
        return Ok(MasterKey::from_base64(&text)?);
    }
    // `validate` refused this combination outside dev mode.
    crate::dev::master_key(&config.data_dir)
}

async fn run(mut config: Config, command: Command) -> anyhow::Result<ExitCode> {
    let master = master_key(&config)?;
    let listener = match command {
        Command::Serve { .. } => {
            let listener = crate::server::bind(config.listen).await?;
            config.listen = listener.local_addr()?;
            Some(listener)
        }
        _ => None,
    };
    let app = App::open(config, &master).await?;
    match command {
        Command::Serve {
            dev_credentials, ..
        } => {
            let listener = listener.ok_or_else(|| anyhow::anyhow!("no listener"))?;
            serve(app, listener, dev_credentials.as_deref()).await
        }
        Command::User(UserCommand::Add {
            username,
            email,
            name,
            groups,
            roles,
        }) => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let spec = UserSpec {
                username,
                password: password.trim_end_matches(['\r', '\n']).to_owned(),
                email,
                display_name: name,
                groups,
                roles,
            };
            let user = admin::add_user(&app, spec, Actor::local("cli"), now()).await?;
            println!("{}", serde_json::to_string_pretty(&user)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::User(UserCommand::List) => {
            for user in app.store.users(0, i64::MAX).await? {
                println!("{}", serde_json::to_string(&user)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::User(UserCommand::Factors { username }) => {
            let user = user_named(&app, &username).await?;
            let report = admin::factors(&app, &user).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::User(UserCommand::ResetFactors { username }) => {
            let user = user_named(&app, &username).await?;
            let removed = admin::reset_factors(&app, &user, Actor::local("cli"), now()).await?;
            println!("removed {removed} factor(s) and every recovery code of `{username}`");
            Ok(ExitCode::SUCCESS)
        }
        Command::User(UserCommand::Mfa { username, policy }) => {
            let user = user_named(&app, &username).await?;
            let policy = MfaPolicy::from(policy);
            admin::set_user_mfa(&app, &user, policy, Actor::local("cli"), now()).await?;
            println!("mfa = {} for `{username}`", policy.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Add { name, scopes }) => {
            let (token, _) =
                crate::service::add_token(&app, &name, &scopes, Actor::local("cli"), now()).await?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::List) => {
            for token in app.store.service_tokens().await? {
                println!("{}", serde_json::to_string(&token)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Remove { name }) => {
            let audit = Actor::local("cli")
                .event(now(), "service_token.remove")
                .detail(serde_json::json!({"name": name}));
            app.store.remove_service_token(&name, &audit).await?;
            println!("removed service token `{name}`");
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(ClientCommand::Mfa { client_id, policy }) => {
            let policy = MfaPolicy::from(policy);
            admin::set_client_mfa(&app, &client_id, policy, Actor::local("cli"), now()).await?;
            println!("mfa = {} for client `{client_id}`", policy.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(ClientCommand::Add {
            client_id,
            kind,
            name,
            redirect_uris,
            post_logout_redirect_uris,
            scopes,
            jwks_file,
            introspect,
            backchannel_logout_uri,
        }) => {
            let jwks = jwks_file.map(|p| read(&p)).transpose()?;
            let spec = ClientSpec {
                name: name.unwrap_or_else(|| client_id.clone()),
                id: client_id,
                kind: match kind {
                    Kind::Web => ClientKind::Web,
                    Kind::Public => ClientKind::Public,
                    Kind::Service => ClientKind::Service,
                    Kind::Device => ClientKind::Device,
                },
                redirect_uris,
                post_logout_redirect_uris,
                scopes,
                jwks,
                introspect,
                backchannel_logout_uri,
            };
            let issued = admin::add_client(&app, spec, Actor::local("cli"), now()).await?;
            println!("{}", serde_json::to_string_pretty(&issued)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(ClientCommand::List) => {
            for client in app.store.clients().await? {
                println!("{}", serde_json::to_string(&client)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(KeysCommand::Rotate { force }) => {
            let rotation = app.keys.rotate(now(), Actor::local("cli"), force).await?;
            println!(
                "active: {}\nnext (published, signs after the next rotation): {}\nretired: {:?}\nremoved: {:?}",
                rotation.active, rotation.next, rotation.retired, rotation.removed
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(KeysCommand::Master) => Ok(ExitCode::SUCCESS),
    }
}

async fn user_named(app: &App, username: &str) -> Result<User, Error> {
    app.store
        .user_by_username(username)
        .await?
        .ok_or_else(|| Error::Invalid(format!("no user `{username}`")))
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        what: format!("`{}`", path.display()),
        source,
    })
}

async fn serve(
    mut app: App,
    listener: tokio::net::TcpListener,
    dev_credentials: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let credentials = if app.config.dev {
        Some(crate::dev::bootstrap(&mut app).await?)
    } else {
        None
    };
    let app = Arc::new(app);
    let on_listening = |addr: SocketAddr| {
        let Some(creds) = &credentials else { return };
        let service = &creds.clients.service;
        println!("Portcullis authserver (dev mode) on http://{addr}");
        println!("  issuer:        {}", creds.issuer);
        println!(
            "  demo user:     {} / {}",
            creds.user.username, creds.user.password
        );
        println!(
            "  service token: curl -s -u {}:{} -d grant_type=client_credentials {}/token",
            service.client_id,
            service.client_secret.as_deref().unwrap_or(""),
            creds.issuer
        );
        if let Some(path) = dev_credentials {
            match serde_json::to_vec_pretty(creds) {
                Ok(json) => {
                    if let Err(e) = bootstrap::fs::write_atomically(path, &json) {
                        eprintln!(
                            "error: cannot write --dev-credentials `{}`: {e}",
                            path.display()
                        );
                    }
                }
                Err(e) => eprintln!("error: {e}"),
            }
        }
    };
    crate::server::run(app, listener, on_listening, bootstrap::shutdown::signal()).await?;
    Ok(ExitCode::SUCCESS)
}
