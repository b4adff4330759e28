//! `warren access NAMESPACE --user USER --role ROLE`: the RabbitMQ rights and
//! the Redis ACL rule that confine a user to one namespace, printed as the
//! commands an operator would type, or applied (`--apply`).
//!
//! The rules themselves are pure, in `warren_core::access`; this module only
//! shows them and carries them to the servers: RabbitMQ through its
//! management API (the same one the management UI uses, so it works from any
//! machine that reaches it), Redis through an `ACL SETUSER` on the connection
//! the settings name.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use warren_core::Settings;
use warren_core::access::{self, RabbitRights, Role, shell_quote};
use warren_core::store::primary::Target;
use warren_core::topology::{PolicyDef, Topology, json_object};

use crate::cli::output::Out;

/// `warren access`'s arguments.
#[derive(Debug, clap::Args)]
pub struct AccessArgs {
    /// The namespace the user is confined to (its RabbitMQ vhost has its name).
    pub namespace: String,
    /// The user, the same name in RabbitMQ and in Redis.
    #[arg(long)]
    pub user: String,
    /// client (submits and reads results; cannot declare or delete shared
    /// queues), worker or scheduler.
    #[arg(long, default_value = "client", value_parser = role_arg)]
    pub role: Role,
    /// Apply the rules, as the user of amqp_url and redis_url (an
    /// administrator): create the vhost and warren's policies in it, set the
    /// user's rights, and its Redis ACL rule.
    #[arg(long)]
    pub apply: bool,
    /// With --apply: a file holding the user's password; the user is created
    /// (or its password reset) with it in both servers. Without it, existing
    /// users keep their passwords.
    #[arg(long, value_name = "PATH", requires = "apply")]
    pub password_file: Option<PathBuf>,
    /// RabbitMQ's management API for --apply (default: http://HOST:15672/
    /// of amqp_url's first node, https://HOST:15671/ for amqps, logging in
    /// as amqp_url's user).
    #[arg(long, value_name = "URL")]
    pub management_url: Option<String>,
}

fn role_arg(s: &str) -> Result<Role, String> {
    s.parse()
}

/// Runs `warren access` with the administrator's `settings`.
pub async fn run(args: &AccessArgs, settings: &Settings, out: Out) -> anyhow::Result<u8> {
    let mut target = settings.clone();
    target.namespace = args.namespace.clone();
    target.validate()?;
    check_user(&args.user)?;
    let ns = &args.namespace;
    let rights = access::rabbit_rights(ns, args.role);
    let redis_target = Target::parse(&settings.redis_url, ns)?;
    let cluster = matches!(redis_target, Target::Cluster { .. });
    let rule = access::redis_rule(ns, cluster);
    let policies = Topology::from_settings(&target).policies();
    if args.apply {
        let password = match &args.password_file {
            Some(p) => Some(read_password(p)?),
            None => None,
        };
        let management = Management::new(settings, args.management_url.as_deref())?;
        management
            .apply(&args.user, &rights, &policies, password.as_deref())
            .await?;
        let Target::Direct(redis_url) = &redis_target else {
            bail!(
                "RabbitMQ is done; Redis is not: ACL rules live on each Redis node, so run this on every node of {} (and keep it in each node's aclfile):\n{}",
                warren_core::settings::redact_url(&settings.redis_url),
                redis_command(&args.user, &rule, false)
            );
        };
        apply_redis(settings, redis_url, &args.user, &rule, password.as_deref()).await?;
    }
    if out.json {
        println!(
            "{}",
            json!({
                "namespace": ns, "user": args.user, "role": args.role.as_str(), "applied": args.apply,
                "rabbitmq": {"vhost": rights.vhost, "configure": rights.configure,
                             "write": rights.write, "read": rights.read,
                             "policies": policies.iter().map(|p| json!({"name": p.name, "policy": p.body()})).collect::<Vec<_>>()},
                "redis": {"acl_setuser": rule},
            })
        );
        return Ok(0);
    }
    let verb = if args.apply { "applied" } else { "to apply" };
    println!(
        "# RabbitMQ ({verb}): namespace {ns} in vhost {}, {} as a {}",
        rights.vhost, args.user, args.role
    );
    if !args.apply {
        println!(
            "rabbitmqctl add_user {} PASSWORD   # if new",
            shell_quote(&args.user)
        );
    }
    for line in rabbit_commands(&args.user, &rights, &policies) {
        println!("{line}");
    }
    println!(
        "# Redis ({verb}): {} confined to {ns}'s keys and channels",
        args.user
    );
    println!("{}", redis_command(&args.user, &rule, !args.apply));
    println!("# {}'s settings", args.user);
    for line in user_settings(settings, &args.user, ns) {
        println!("{line}");
    }
    Ok(0)
}

/// A user name both servers take, and that reads as one word: not empty,
/// no spaces or control characters (Redis refuses spaces in ACL users).
fn check_user(user: &str) -> anyhow::Result<()> {
    if user.is_empty()
        || user.chars().count() > 128
        || user.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!("--user {user:?} must be 1-128 characters without spaces or control characters");
    }
    Ok(())
}

/// The `rabbitmqctl` lines that set up the vhost, its policies and the
/// user's rights.
fn rabbit_commands(user: &str, r: &RabbitRights, policies: &[PolicyDef]) -> Vec<String> {
    let vhost = shell_quote(&r.vhost);
    let mut lines = vec![format!("rabbitmqctl add_vhost {vhost}")];
    for p in policies {
        lines.push(format!(
            "rabbitmqctl set_policy -p {vhost} --apply-to queues --priority 1 {} {} {}",
            shell_quote(&p.name),
            shell_quote(&p.pattern),
            shell_quote(&Value::Object(json_object(&p.definition)).to_string()),
        ));
    }
    lines.push(format!(
        "rabbitmqctl set_permissions -p {vhost} {} {} {} {}",
        shell_quote(user),
        shell_quote(&r.configure),
        shell_quote(&r.write),
        shell_quote(&r.read)
    ));
    lines
}

/// The `redis-cli ACL SETUSER` line; `with_password` shows where a new
/// user's password goes.
fn redis_command(user: &str, rule: &[String], with_password: bool) -> String {
    let mut words = vec![
        "redis-cli".to_string(),
        "ACL".into(),
        "SETUSER".into(),
        shell_quote(user),
        "on".into(),
    ];
    if with_password {
        words.push("'>PASSWORD'".into());
    }
    words.extend(rule.iter().map(|w| shell_quote(w)));
    words.join(" ")
}

/// The settings the confined user's processes run with: the administrator's
/// URLs with the user's name, a placeholder password and the namespace's
/// vhost.
fn user_settings(settings: &Settings, user: &str, ns: &str) -> Vec<String> {
    let encoded = url_user(user);
    let nodes: Vec<String> = warren_core::amqp::node_urls(&settings.amqp_url)
        .iter()
        .filter_map(|u| u.parse::<lapin::uri::AMQPUri>().ok())
        .map(|u| {
            let scheme = if u.scheme == lapin::uri::AMQPScheme::AMQPS {
                "amqps"
            } else {
                "amqp"
            };
            format!(
                "{scheme}://{encoded}:PASSWORD@{}:{}/{ns}",
                u.authority.host, u.authority.port
            )
        })
        .collect();
    let amqp = if nodes.is_empty() {
        format!("amqp://{encoded}:PASSWORD@HOST:5672/{ns}")
    } else {
        nodes.join(",")
    };
    vec![
        format!("WARREN_NAMESPACE={ns}"),
        format!("WARREN_AMQP_URL={}", shell_quote(&amqp)),
        format!(
            "WARREN_REDIS_URL={}",
            shell_quote(&redis_url(&settings.redis_url, user))
        ),
    ]
}

/// `user` as a URL's user information holds it: `@`, `:` and the like
/// percent-encoded.
fn url_user(user: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(user, KEEP).to_string()
}

/// The administrator's Redis URL with `user` and a placeholder password in
/// it (every form: a Sentinel or Cluster URL lists several hosts).
fn redis_url(admin: &str, user: &str) -> String {
    let Some((scheme, rest)) = admin.split_once("://") else {
        return format!("redis://{user}:PASSWORD@HOST:6379/");
    };
    let user = url_user(user);
    let hosts = rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts);
    format!("{scheme}://{user}:PASSWORD@{hosts}")
}

/// A password from its file: the first line, without its line ending.
fn read_password(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --password-file {}", path.display()))?;
    let password = text.lines().next().unwrap_or_default().to_string();
    if password.is_empty() {
        bail!("--password-file {} is empty", path.display());
    }
    Ok(password)
}

/// Sets `user`'s ACL rule (and password) on the Redis at `url`.
async fn apply_redis(
    settings: &Settings,
    url: &str,
    user: &str,
    rule: &[String],
    password: Option<&str>,
) -> anyhow::Result<()> {
    let shown = warren_core::settings::redact_url(url);
    let tls = warren_core::tls::Tls::load(settings)?;
    let client = tls
        .redis_client(url)
        .with_context(|| format!("cannot reach Redis at {shown}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("cannot reach Redis at {shown}"))?;
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(user);
    if let Some(p) = password {
        cmd.arg("reset").arg("on").arg(format!(">{p}"));
    } else {
        cmd.arg("on");
    }
    cmd.arg(rule);
    let () = cmd
        .query_async(&mut conn)
        .await
        .with_context(|| format!("ACL SETUSER {user} on Redis at {shown}"))?;
    Ok(())
}

/// RabbitMQ's management API, as an administrator.
struct Management {
    base: reqwest::Url,
    user: String,
    password: String,
    http: reqwest::Client,
}

impl Management {
    /// The API at `explicit`, or the one beside amqp_url's first node, with
    /// amqp_url's credentials unless `explicit` carries its own.
    fn new(settings: &Settings, explicit: Option<&str>) -> anyhow::Result<Self> {
        let first = warren_core::amqp::node_urls(&settings.amqp_url)
            .first()
            .map(|u| u.to_string())
            .unwrap_or_default();
        let amqp = first.parse::<lapin::uri::AMQPUri>().map_err(|e| {
            anyhow::anyhow!(
                "amqp_url {}: {e}",
                warren_core::settings::redact_url(&first)
            )
        })?;
        let base = match explicit {
            Some(u) => u.to_string(),
            None if amqp.scheme == lapin::uri::AMQPScheme::AMQPS => {
                format!("https://{}:15671/", amqp.authority.host)
            }
            None => format!("http://{}:15672/", amqp.authority.host),
        };
        let mut base = reqwest::Url::parse(&base)
            .with_context(|| format!("--management-url {base} is not a URL"))?;
        let (user, password) = if base.username().is_empty() {
            (
                amqp.authority.userinfo.username.clone(),
                amqp.authority.userinfo.password.clone(),
            )
        } else {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (
                decode(base.username()),
                decode(base.password().unwrap_or_default()),
            )
        };
        let _ = base.set_username("");
        let _ = base.set_password(None);
        Ok(Self {
            base,
            user,
            password,
            http: reqwest::Client::new(),
        })
    }

    /// `PUT /api/<segments>` with `body`.
    async fn put(&self, segments: &[&str], body: &Value) -> anyhow::Result<()> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("--management-url {} cannot hold a path", self.base))?
            .pop_if_empty()
            .push("api")
            .extend(segments);
        let answer = self
            .http
            .put(url.clone())
            .basic_auth(&self.user, Some(&self.password))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach RabbitMQ's management API at {} (is the rabbitmq_management plugin on? --management-url names another)",
                    self.base
                )
            })?;
        let status = answer.status();
        if !status.is_success() {
            let text = answer.text().await.unwrap_or_default();
            let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
                " (amqp_url's user must be a RabbitMQ administrator)"
            } else {
                ""
            };
            bail!("RabbitMQ's management API refused PUT {url}: {status} {text}{hint}");
        }
        Ok(())
    }

    /// The vhost, its policies, the user (with `password`) and its rights.
    async fn apply(
        &self,
        user: &str,
        rights: &RabbitRights,
        policies: &[PolicyDef],
        password: Option<&str>,
    ) -> anyhow::Result<()> {
        let vhost = rights.vhost.as_str();
        self.put(&["vhosts", vhost], &json!({})).await?;
        for p in policies {
            self.put(&["policies", vhost, &p.name], &p.body()).await?;
        }
        if let Some(p) = password {
            self.put(&["users", user], &json!({"password": p, "tags": ""}))
                .await?;
        }
        self.put(
            &["permissions", vhost, user],
            &json!({"configure": rights.configure, "write": rights.write, "read": rights.read}),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_redis_url_keeps_the_administrators_hosts() {
        assert_eq!(
            redis_url("redis://127.0.0.1:6379/", "alice"),
            "redis://alice:PASSWORD@127.0.0.1:6379/"
        );
        assert_eq!(
            redis_url(
                "rediss+sentinel://:secret@s1:26379,s2:26379/main/0",
                "alice"
            ),
            "rediss+sentinel://alice:PASSWORD@s1:26379,s2:26379/main/0"
        );
        assert_eq!(
            redis_url("redis://admin:p@ss@h:1/", "bob"),
            "redis://bob:PASSWORD@h:1/"
        );
        assert_eq!(
            redis_url("redis://h:1/", "a@b:c"),
            "redis://a%40b%3Ac:PASSWORD@h:1/"
        );
    }

    #[test]
    fn a_users_amqp_url_names_every_node_and_the_namespaces_vhost() {
        let settings = Settings {
            amqp_url: "amqp://guest:guest@n1:5701/%2f,amqps://guest:guest@n2:5702/%2f".into(),
            ..Default::default()
        };
        let lines = user_settings(&settings, "svc@a", "team-a");
        assert!(
            lines.contains(&"WARREN_AMQP_URL=amqp://svc%40a:PASSWORD@n1:5701/team-a,amqps://svc%40a:PASSWORD@n2:5702/team-a".to_string()),
            "{lines:?}"
        );
        assert!(
            lines
                .contains(&"WARREN_REDIS_URL=redis://svc%40a:PASSWORD@127.0.0.1:6379/".to_string()),
            "{lines:?}"
        );
    }

    #[test]
    fn a_user_name_with_spaces_or_nothing_is_named() {
        for bad in ["", "al ice", "a\tb", "x\n"] {
            let e = check_user(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        check_user("CN=worker-1,O=acme").unwrap();
    }
}
