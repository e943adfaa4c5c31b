//! Property tests over a store: proptest generates the inputs and shrinks a failure, while the
//! check itself is async (a store call is), which proptest's own runner cannot drive. The
//! search is proptest's: simplify while the check fails, complicate while it passes.

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use std::fmt::Debug;
use std::future::Future;

/// Runs of the check while shrinking one failure, at most.
const MAX_SHRINK_STEPS: u32 = 512;

/// Checks `check` on `cases` inputs from `strategy`; on a failure, panics with the smallest
/// failing input found and its message.
pub async fn for_all<S, F, Fut>(cases: u32, strategy: S, check: F)
where
    S: Strategy,
    S::Value: Debug,
    F: Fn(S::Value) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    for _ in 0..cases {
        let mut tree = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree,
            Err(why) => panic!("cannot generate an input: {why}"),
        };
        let Err(first) = check(tree.current()).await else {
            continue;
        };
        let mut failure = (format!("{:?}", tree.current()), first);
        let mut more = tree.simplify();
        for _ in 0..MAX_SHRINK_STEPS {
            if !more {
                break;
            }
            more = match check(tree.current()).await {
                Err(why) => {
                    failure = (format!("{:?}", tree.current()), why);
                    tree.simplify()
                }
                Ok(()) => tree.complicate(),
            };
        }
        panic!(
            "property failed: {}\nsmallest failing input: {}",
            failure.1, failure.0
        );
    }
}
