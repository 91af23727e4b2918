//! Images that share a build context build one after another.
//!
//! The Engine API's `/build` runs the classic builder, whose layer cache holds only finished
//! steps and which shares nothing between builds that run at once. Two images whose
//! Dockerfiles begin with the same stage over the same files (the exposure workloads: one
//! dependency build for both, from `consumers/`) would each run that stage when built at the
//! same time; one after the other, the second finds it in the cache. So the builds of one
//! context take turns, in the order they come to it, while images of other contexts still
//! build alongside, up to `--jobs` (a build waiting for its turn keeps its place among them).
//! Only the build takes a turn: looking for the tag and pushing do not.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use tokio::sync::MutexGuard;

use super::ImageJob;

/// The turns of one build run: a lock for each build context that more than one job builds
/// from.
#[derive(Debug, Default)]
pub(super) struct Turns {
    contexts: HashMap<PathBuf, Turn>,
}

#[derive(Debug, Default)]
struct Turn {
    lock: tokio::sync::Mutex<()>,
    /// The consumer whose build has (or last had) the turn.
    holder: Mutex<String>,
}

impl Turns {
    pub(super) fn new(jobs: &[ImageJob]) -> Turns {
        let mut count: HashMap<&PathBuf, usize> = HashMap::new();
        for job in jobs {
            *count.entry(&job.build.context).or_default() += 1;
        }
        let contexts = count
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(context, _)| (context.clone(), Turn::default()))
            .collect();
        Turns { contexts }
    }

    /// Takes `job`'s turn at its build context: at once when no other build of the context
    /// runs, else after it, once `waiting` has been told whose build that is. Hold the guard
    /// for the build; `None` when no other job builds from the context.
    pub(super) async fn take(
        &self,
        job: &ImageJob,
        waiting: impl FnOnce(&str),
    ) -> Option<MutexGuard<'_, ()>> {
        let turn = self.contexts.get(&job.build.context)?;
        // The holder's name is set under its own lock together with the turn's, so that a
        // build that must wait reads who it waits for, not who came before.
        let building = {
            let mut holder = lock(&turn.holder);
            if let Ok(guard) = turn.lock.try_lock() {
                *holder = job.consumer.clone();
                return Some(guard);
            }
            holder.clone()
        };
        waiting(&building);
        let guard = turn.lock.lock().await;
        *lock(&turn.holder) = job.consumer.clone();
        Some(guard)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::manifest::Build;

    fn job(consumer: &str, context: &str) -> ImageJob {
        let context = Path::new("/project").join(context);
        ImageJob {
            consumer: consumer.to_string(),
            build: Build {
                dockerfile: context.join(consumer).join("Dockerfile"),
                context,
                dockerfile_in_context: format!("{consumer}/Dockerfile"),
                target: None,
                args: BTreeMap::new(),
            },
            digest: "0".repeat(64),
            tag: "0".repeat(16),
            repository: format!("p/{consumer}"),
            name: format!("registry/p/{consumer}"),
        }
    }

    #[tokio::test]
    async fn builds_of_one_context_take_turns_and_others_do_not_wait() {
        let api = job("api", "consumers");
        let worker = job("worker", "consumers");
        let other = job("other", "consumers/other");
        let turns = Turns::new(&[api.clone(), worker.clone(), other.clone()]);

        let first = turns.take(&api, |_| panic!("the first build waits for none"));
        let first = first
            .await
            .expect("api shares its context: it takes a turn");
        let alone = turns.take(&other, |_| panic!("a context of its own: no wait"));
        assert!(
            alone.await.is_none(),
            "no turn to take for a context of one"
        );

        let waited_for = Mutex::new(None);
        let second = turns.take(&worker, |holder| {
            *waited_for.lock().expect("lock") = Some(holder.to_string());
        });
        tokio::pin!(second);
        let early = tokio::time::timeout(Duration::from_millis(50), &mut second).await;
        assert!(early.is_err(), "worker builds only after api's build");
        assert_eq!(*waited_for.lock().expect("lock"), Some("api".to_string()));

        drop(first);
        let after = tokio::time::timeout(Duration::from_secs(5), second).await;
        assert!(
            matches!(after, Ok(Some(_))),
            "worker's turn comes when api's build ends"
        );
    }
}
