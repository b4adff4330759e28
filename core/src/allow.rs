//! What a worker lets a program task set besides its program: environment
//! variables and a working directory.
//!
//! An allow-list of programs is a boundary only if nothing else a task
//! carries can walk around it. `LD_PRELOAD` runs a shared object's code in
//! any allowed program; `BASH_ENV`, `SHELLOPTS`/`PS4`, `PYTHONPATH`,
//! `PERL5OPT`, `NODE_OPTIONS`, `GCONV_PATH` or `PATH` do the same for other
//! programs; a working directory anywhere lets a program read or write where
//! its owner never meant. So a task's variables are refused unless the
//! worker allows them by name or glob (`--allow-env`), and the variables
//! that change how programs load or start ([`is_loader_variable`]) are
//! refused even when a glob would allow them. A working directory must lie
//! under one the worker allows (`--allow-cwd`), checked on the path as
//! written (no `..`) here and again on the worker once symbolic links are
//! resolved. The rules are pure: the worker applies them, and the client
//! applies the part that needs no worker to refuse early.

use std::path::{Component, Path};

/// Variables that change how a program is loaded or started, or which
/// programs and files it runs: refused whatever `--allow-env` says.
const LOADER_NAMES: &[&str] = &[
    "PATH",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "CDPATH",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "CLASSPATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "LESSOPEN",
    "LESSCLOSE",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "BROWSER",
    "SHELL",
    "ZDOTDIR",
    "HOME",
    "TCLLIBPATH",
    "PHPRC",
];

/// Prefixes of such variables (`LD_PRELOAD`, `PYTHONSTARTUP`, `PERL5LIB`,
/// exported bash functions, ...), and warren's own.
const LOADER_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "MALLOC_",
    "PYTHON",
    "PERL",
    "RUBY",
    "GEM_",
    "NODE_",
    "NPM_",
    "LUA_",
    "GIT_",
    "BASH_FUNC_",
    "WARREN_",
];

/// Whether variable `name` changes how programs load or start (and so is
/// never passed from a task to a program).
pub fn is_loader_variable(name: &str) -> bool {
    LOADER_NAMES.contains(&name) || LOADER_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether the task variable `name` may reach a program on a worker whose
/// `--allow-env` rules are `rules` (names, or globs with `*`). The error
/// names the variable and what to do.
pub fn env_allowed(rules: &[String], name: &str, worker: &str) -> Result<(), String> {
    let portable = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !portable {
        return Err(format!(
            "environment variable {} is not a valid name (letters, digits and _, not starting with a digit)",
            crate::taskkey::shown(name)
        ));
    }
    if is_loader_variable(name) {
        return Err(format!(
            "environment variable {name} changes how programs load or start, so no worker passes it from a task to a program (whatever --allow-env says)"
        ));
    }
    if rules.iter().any(|rule| glob(rule, name)) {
        return Ok(());
    }
    Err(format!(
        "environment variable {name} is not allowed on worker {worker}: start it with --allow-env {name} (or allowed_env in warren.toml)"
    ))
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether working directory `cwd`, as written, lies under one of `dirs`
/// (`--allow-cwd`): absolute, with no `..`, `dirs` itself or below it. The
/// worker checks again once symbolic links are resolved, since a link under
/// an allowed directory may point anywhere.
pub fn cwd_allowed(dirs: &[String], cwd: &str, worker: &str) -> Result<(), String> {
    let path = Path::new(cwd);
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "working directory {} must be an absolute path without '..'",
            crate::taskkey::shown(cwd)
        ));
    }
    if dirs.iter().any(|d| path.starts_with(d)) {
        return Ok(());
    }
    Err(format!(
        "working directory {} is not under a directory worker {worker} allows: start it with --allow-cwd DIR (or allowed_cwd in warren.toml)",
        crate::taskkey::shown(cwd)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn variables_are_refused_unless_allowed_and_loader_ones_always() {
        let r = rules(&["GREETING", "APP_*", "*"]);
        assert!(env_allowed(&rules(&["GREETING"]), "GREETING", "w").is_ok());
        let e = env_allowed(&rules(&["GREETING"]), "OTHER", "w").unwrap_err();
        assert!(
            e.contains("--allow-env OTHER") && e.contains("worker w"),
            "{e}"
        );
        assert!(env_allowed(&rules(&["APP_*"]), "APP_MODE", "w").is_ok());
        assert!(env_allowed(&rules(&["APP_*"]), "XAPP_MODE", "w").is_err());
        for bad in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "BASH_ENV",
            "ENV",
            "SHELLOPTS",
            "PS4",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "PERL5LIB",
            "RUBYOPT",
            "NODE_OPTIONS",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
            "PATH",
            "IFS",
            "BASH_FUNC_ls%%",
            "WARREN_AMQP_URL",
        ] {
            let e = env_allowed(&r, bad, "w").unwrap_err();
            assert!(e.contains(bad) || e.contains("valid name"), "{bad}: {e}");
        }
        assert!(
            env_allowed(&r, "LD_PRELOAD", "w")
                .unwrap_err()
                .contains("load or start")
        );
        for odd in ["", "A=B", "1X", "A B", "A\0B"] {
            assert!(
                env_allowed(&r, odd, "w")
                    .unwrap_err()
                    .contains("valid name"),
                "{odd:?}"
            );
        }
    }

    #[test]
    fn globs_match_any_run_of_characters() {
        assert!(glob("*", "ANY"));
        assert!(glob("A*", "A"));
        assert!(glob("A*Z", "ABCZ"));
        assert!(!glob("A*Z", "ABC"));
        assert!(glob("*_MODE", "APP_MODE"));
        assert!(glob("A*B*C", "AxxBxxC"));
        assert!(!glob("A*B*C", "AxxCxxB"));
        assert!(!glob("AB", "ABC"));
        assert!(!glob("A*AA", "AA"), "no overlap between the parts");
    }

    #[test]
    fn a_working_directory_must_be_under_an_allowed_one_as_written() {
        let dirs = rules(&["/srv/jobs", "/tmp/work/"]);
        assert!(cwd_allowed(&dirs, "/srv/jobs", "w").is_ok());
        assert!(cwd_allowed(&dirs, "/srv/jobs/a/b", "w").is_ok());
        assert!(cwd_allowed(&dirs, "/tmp/work/x", "w").is_ok());
        let e = cwd_allowed(&dirs, "/srv/jobsX", "w").unwrap_err();
        assert!(e.contains("--allow-cwd"), "{e}");
        assert!(cwd_allowed(&dirs, "/etc", "w").is_err());
        assert!(
            cwd_allowed(&dirs, "/srv/jobs/../../etc", "w")
                .unwrap_err()
                .contains("..")
        );
        assert!(
            cwd_allowed(&dirs, "srv/jobs", "w")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            cwd_allowed(&[], "/srv/jobs", "w").is_err(),
            "nothing allowed by default"
        );
    }
}
