//! The wake-up task of an outbox consumer actor: turns the store's local commit signal and a
//! slow timer (other instances' commits, retries after a failure) into calls of `wake`, until
//! `wake` answers false (the actor is gone).

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub fn spawn_waker(
    mut commits: Option<watch::Receiver<u64>>,
    every: Duration,
    wake: impl Fn() -> bool + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            let changed = async {
                match commits.as_mut() {
                    Some(receiver) => receiver.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                alive = changed => {
                    if !alive { commits = None; }
                }
                _ = tick.tick() => {}
            }
            if !wake() {
                break;
            }
        }
    })
}
