//! `ETCD_<FLAG_NAME>` environment variables, as etcd's `flags.SetFlagsFromEnv`:
//! they fill in the flags the command line did not set.

use std::collections::HashSet;

use super::command_line::FlagValues;
use super::flags::{env_key, Spec, FLAGS};
use super::ConfigError;

/// etcd 3.5's fatal message (its doubled parenthesis included) for an `ETCD_*` variable set
/// beside its command-line flag.
const SHADOWED_ENV: &str = "conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag))";

pub(super) fn env_get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// Fills flags in `names` that the command line did not set from `ETCD_<NAME>`. A variable
/// given beside its flag (even empty) refuses to start, as etcd 3.5's `verifyEnv`, when
/// `conflict_is_fatal`; else the command line wins with a warning.
pub(super) fn apply_env(
    flags: &mut FlagValues,
    env: &[(String, String)],
    names: &[&str],
    conflict_is_fatal: bool,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let mut sorted: Vec<&'static Spec> = FLAGS.iter().filter(|s| names.contains(&s.name)).collect();
    sorted.sort_by_key(|s| s.name); // Go's VisitAll order
    for spec in sorted {
        if spec.name == "config-file" || spec.name == "version" {
            continue; // read separately / never settable from env (ETCD_VERSION)
        }
        let key = env_key(spec.name);
        if conflict_is_fatal && flags.is_set(spec.name) && env.iter().any(|(k, _)| *k == key) {
            return Err(ConfigError::fatal(SHADOWED_ENV, ("environment-variable", key)));
        }
        let Some(value) = env_get(env, &key) else {
            continue;
        };
        if flags.is_set(spec.name) {
            warnings.push(format!(
                "environment variable {} is shadowed by flag --{}; using the command-line value",
                key, spec.name
            ));
            continue;
        }
        flags.set(spec, value).map_err(|why| {
            ConfigError::invalid(format!("invalid value {:?} for {}: {}", value, key, why))
        })?;
        flags.from_env.insert(spec.name);
    }
    Ok(())
}

pub(super) fn warn_unrecognized_env(env: &[(String, String)], warnings: &mut Vec<String>) {
    let known: HashSet<String> = FLAGS.iter().map(|s| env_key(s.name)).collect();
    for (k, v) in env {
        if k.starts_with("ETCD_") && !known.contains(k) {
            warnings.push(format!("unrecognized environment variable {}={}", k, v));
        }
    }
}
