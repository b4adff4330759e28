//! Who may do what in a namespace: the RabbitMQ rights and the Redis ACL rule
//! of each role, as pure functions of the namespace (`warren access` prints
//! and applies them; tests check them against real servers).
//!
//! **RabbitMQ: a vhost per namespace.** warren publishes through the default
//! exchange, and RabbitMQ grants that exchange whole: write rights on
//! `amq.default` in a shared vhost reach every queue in it, every other
//! namespace's included. A vhost per namespace closes that with stock
//! permissions and no change of topology: a user has rights in its own vhost
//! only, and cannot even open a channel in another. Inside the vhost the
//! queues keep their `<ns>.` names, so one RabbitMQ can also hold several
//! namespaces in one vhost for those who do not need the boundary.
//!
//! **Roles.** A scheduler and a worker declare the topology (a worker its own
//! work queues, which no scheduler knows of beforehand), so they get every
//! right on the namespace's names. A client gets only what a client does:
//! declare and read its own reply queue (`<ns>.client.<id>`, exclusive to its
//! connection), publish through the default exchange (to `<ns>.submit`) and to
//! the control exchange (`Client.run`). It cannot declare, delete, purge or
//! consume any shared queue. Roles inside a namespace limit what a mistake
//! can do; they are not a boundary against a key holder, because the
//! namespace key (which signs every message) is one per namespace.
//!
//! **Redis: one rule for every role.** Every role runs warren's Lua scripts,
//! and a script acts with its caller's rights, so a narrower rule for a
//! client would refuse the scripts it runs, not what they do. The boundary is
//! the namespace: keys `<ns>:*` (`{<ns>}:*` on a Redis Cluster, whose keys
//! carry the namespace as a hash tag), channels likewise, the command
//! categories warren uses and nothing `@dangerous`.

use std::fmt;
use std::str::FromStr;

/// A part a process plays in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Submits tasks and reads results: the CLI, the Rust and Python clients.
    Client,
    /// Runs tasks.
    Worker,
    /// Resolves readiness and publishes runnable tasks.
    Scheduler,
}

impl Role {
    /// Every role, in the order `warren access` prints them.
    pub const ALL: [Role; 3] = [Role::Client, Role::Worker, Role::Scheduler];

    /// The role's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Worker => "worker",
            Role::Scheduler => "scheduler",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}: expected client, worker or scheduler"))
    }
}

/// A user's rights in one RabbitMQ vhost: three regular expressions over
/// exchange and queue names, as `rabbitmqctl set_permissions` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitRights {
    /// The vhost the rights are in: the namespace's own.
    pub vhost: String,
    /// Declare and delete.
    pub configure: String,
    /// Publish to (exchanges), bind (queues).
    pub write: String,
    /// Consume, purge, bind from (exchanges).
    pub read: String,
}

/// The vhost of namespace `ns`: its own name.
pub fn vhost(ns: &str) -> String {
    ns.to_string()
}

/// What `role` may do in RabbitMQ in namespace `ns`. Namespaces are letters,
/// digits, `-` and `_` (settings check), so they need no escaping here.
pub fn rabbit_rights(ns: &str, role: Role) -> RabbitRights {
    let (configure, write, read) = match role {
        Role::Client => (
            format!(r"^{ns}\.client\."),
            format!(r"^(amq\.default|{ns}\.control)$"),
            format!(r"^{ns}\.client\."),
        ),
        Role::Worker | Role::Scheduler => (
            format!(r"^{ns}\."),
            format!(r"^(amq\.default|{ns}\..*)$"),
            format!(r"^{ns}\."),
        ),
    };
    RabbitRights {
        vhost: vhost(ns),
        configure,
        write,
        read,
    }
}

/// The Redis ACL rule (the arguments after `ACL SETUSER <user>`) confining a
/// user to namespace `ns`; `cluster` for a Redis Cluster, whose keys carry the
/// namespace as a hash tag. The same for every role (see the module docs).
pub fn redis_rule(ns: &str, cluster: bool) -> Vec<String> {
    let prefix = if cluster {
        format!("{{{ns}}}:")
    } else {
        format!("{ns}:")
    };
    let mut rule = vec![
        "resetkeys".to_string(),
        format!("~{prefix}*"),
        "resetchannels".to_string(),
        format!("&{prefix}*"),
    ];
    // TIME: the scripts read the server's clock; MULTI: a few writes go
    // together. The rest are the categories of what warren calls.
    rule.extend(
        [
            "-@all",
            "+@read",
            "+@write",
            "+@scripting",
            "+@connection",
            "+@pubsub",
            "+@transaction",
            "+time",
            "-@dangerous",
        ]
        .map(String::from),
    );
    rule
}

/// `word` quoted for a POSIX shell when it holds anything a shell would
/// read as more than a word.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RabbitMQ matches a permission's expression anywhere in a name
    /// (hence the `^`), as `re:run/2` does.
    fn matches(pattern: &str, name: &str) -> bool {
        regex::Regex::new(pattern)
            .expect("a valid expression")
            .is_match(name)
    }

    #[test]
    fn a_client_reaches_its_reply_queue_the_submit_path_and_nothing_shared() {
        let r = rabbit_rights("team-a", Role::Client);
        assert_eq!(r.vhost, "team-a");
        assert!(matches(&r.configure, "team-a.client.3f2a"));
        assert!(matches(&r.read, "team-a.client.3f2a"));
        assert!(matches(&r.write, "amq.default"));
        assert!(matches(&r.write, "team-a.control"));
        for shared in [
            "team-a.submit",
            "team-a.results",
            "team-a.work.default",
            "team-a.dead",
            "team-a.dlx",
        ] {
            assert!(!matches(&r.configure, shared), "configure {shared}");
            assert!(!matches(&r.read, shared), "read {shared}");
            assert!(!matches(&r.write, shared), "write {shared}");
        }
        assert!(!matches(&r.write, "team-a.controlx"));
    }

    #[test]
    fn services_reach_every_name_of_their_namespace_and_no_other() {
        for role in [Role::Worker, Role::Scheduler] {
            let r = rabbit_rights("team-a", role);
            for name in ["team-a.submit", "team-a.work.gpu", "team-a.control.w1"] {
                assert!(
                    matches(&r.configure, name) && matches(&r.read, name),
                    "{name}"
                );
                assert!(matches(&r.write, name), "{name}");
            }
            assert!(matches(&r.write, "amq.default"));
            for other in ["team-b.submit", "team-ab.submit", "amq.topic"] {
                assert!(!matches(&r.configure, other), "{other}");
                assert!(!matches(&r.write, other), "{other}");
            }
        }
    }

    #[test]
    fn the_redis_rule_confines_keys_and_channels_and_refuses_dangerous_commands() {
        let rule = redis_rule("team-a", false);
        assert_eq!(
            &rule[..4],
            ["resetkeys", "~team-a:*", "resetchannels", "&team-a:*"]
        );
        assert_eq!(rule.last().map(String::as_str), Some("-@dangerous"));
        assert!(rule.iter().any(|r| r == "+time"));
        let tagged = redis_rule("team-a", true);
        assert_eq!(&tagged[1], "~{team-a}:*");
        assert_eq!(&tagged[3], "&{team-a}:*");
    }

    #[test]
    fn roles_parse_by_name_and_name_the_choices_when_wrong() {
        assert_eq!("worker".parse::<Role>(), Ok(Role::Worker));
        let e = "admin".parse::<Role>().unwrap_err();
        assert!(
            e.contains("\"admin\"") && e.contains("client, worker or scheduler"),
            "{e}"
        );
    }

    #[test]
    fn shell_quoting_leaves_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("team-a"), "team-a");
        assert_eq!(shell_quote(r"^team-a\."), r"'^team-a\.'");
        assert_eq!(shell_quote("~team-a:*"), "'~team-a:*'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
