//! `segdistill cache list|prune`: the teacher-cache folders under a runs folder, their size, and
//! whether a run can still use them; `prune` removes the orphaned ones (their teacher file changed
//! or is gone, or their dataset is gone).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::distill::teacher_cache::manifest;
use crate::util::fmt::{escaped, human_bytes};

#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheAction {
    /// List the cache folders: size, entries, and whether a run can still use each.
    List(CacheRoot),
    /// Remove the orphaned cache folders (teacher file changed or gone, dataset gone).
    Prune {
        #[command(flatten)]
        root: CacheRoot,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct CacheRoot {
    /// The teacher-cache folder (default: runs/teacher-cache, as `train --teacher-cache-dir`).
    #[arg(long, default_value_os_t = crate::train::config::default_teacher_cache_root(&crate::train::TrainConfig::default().runs_dir))]
    pub dir: PathBuf,
}

pub fn run(args: CacheArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        CacheAction::List(root) => {
            let folders =
                manifest::list(&root.dir).map_err(|e| anyhow::anyhow!("cannot list {}: {e}", root.dir.display()))?;
            if folders.is_empty() {
                println!("no teacher caches in {}", root.dir.display());
            }
            for f in &folders {
                let status = match (&f.manifest, f.orphaned_because()) {
                    (None, _) => "unknown (built by an older version; kept)".to_string(),
                    (Some(_), Some(why)) => format!("orphaned: {why}"),
                    (Some(m), None) => format!("current ({} on {})", m.teacher_model, m.dataset.display()),
                };
                println!(
                    "{}  {}  {} entries  {}",
                    escaped(&f.dir.display().to_string()),
                    human_bytes(f.bytes),
                    f.entries,
                    escaped(&status)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheAction::Prune { root, dry_run } => {
            let pruned = manifest::prune_orphaned(&root.dir, dry_run)
                .map_err(|e| anyhow::anyhow!("pruning {}: {e}", root.dir.display()))?;
            let verb = if dry_run { "would remove" } else { "removed" };
            for (f, why) in &pruned {
                println!(
                    "{verb} {} ({}): {}",
                    escaped(&f.dir.display().to_string()),
                    human_bytes(f.bytes),
                    escaped(why)
                );
            }
            let (removed, freed) = (pruned.len(), pruned.iter().map(|(f, _)| f.bytes).sum::<u64>());
            println!(
                "{} orphaned cache folder(s), {}{}",
                removed,
                human_bytes(freed),
                if dry_run { " would be freed" } else { " freed" }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
