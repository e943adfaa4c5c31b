//! Statements sent together on one connection (tokio-postgres pipelines them: one round trip,
//! run in the order they were first polled). When one fails inside a transaction, PostgreSQL
//! answers every later one with "current transaction is aborted" (25P02); the caller must see
//! the failure that caused it — a deadlock to retry, a conflict to report — not that echo.

use convo_core::StoreError;

/// The results of statements sent together, settled into one result.
pub(crate) trait Settle {
    type Out;
    fn settle(self) -> Result<Self::Out, StoreError>;
}

/// `Settle` for a tuple of results of each arity the callers pipeline.
macro_rules! settle_tuple {
    ($($t:ident $v:ident),+) => {
        impl<$($t),+> Settle for ($(Result<$t, StoreError>,)+) {
            type Out = ($($t,)+);
            fn settle(self) -> Result<Self::Out, StoreError> {
                match self {
                    ($(Ok($v),)+) => Ok(($($v,)+)),
                    ($($v,)+) => Err(cause([$($v.err()),+])),
                }
            }
        }
    };
}

settle_tuple!(A a, B b);
settle_tuple!(A a, B b, C c);
settle_tuple!(A a, B b, C c, D d);
settle_tuple!(A a, B b, C c, D d, E e);
settle_tuple!(A a, B b, C c, D d, E e, F f);

/// Runs the statements' futures together and settles them (`Settle`).
macro_rules! pipelined {
    ($($f:expr),+ $(,)?) => {
        crate::pipeline::Settle::settle(tokio::join!($($f),+))
    };
}
pub(crate) use pipelined;

/// The first error that is not an echo of another, else the first.
fn cause<const N: usize>(errors: [Option<StoreError>; N]) -> StoreError {
    cause_by(errors, is_echo)
}

fn cause_by<const N: usize>(
    errors: [Option<StoreError>; N],
    is_echo: impl Fn(&StoreError) -> bool,
) -> StoreError {
    let mut errors: Vec<StoreError> = errors.into_iter().flatten().collect();
    match errors.iter().position(|e| !is_echo(e)) {
        Some(i) => errors.swap_remove(i),
        None => errors
            .into_iter()
            .next()
            .unwrap_or_else(|| StoreError::broken("a pipelined statement failed without an error")),
    }
}

fn is_echo(e: &StoreError) -> bool {
    crate::sqlstate(e)
        .is_some_and(|c| *c == tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
}

#[cfg(test)]
mod tests {
    use super::{Settle, cause_by};
    use convo_core::{Refusal, StoreError};

    fn echo_if_broken(e: &StoreError) -> bool {
        matches!(e, StoreError::Fault(_))
    }

    #[test]
    fn the_cause_wins_over_its_echo_in_any_position() {
        let echo = || Some(StoreError::broken("echo"));
        let real = || Some(StoreError::Refused(Refusal::Unsubscribed));
        let picked = cause_by([echo(), real()], echo_if_broken);
        assert!(matches!(picked, StoreError::Refused(_)));
        let picked = cause_by([None, real(), echo()], echo_if_broken);
        assert!(matches!(picked, StoreError::Refused(_)));
        // Only echoes: the first is all there is to say.
        let picked = cause_by([echo(), None], echo_if_broken);
        assert!(matches!(picked, StoreError::Fault(_)));
    }

    #[test]
    fn all_ok_settles_to_the_values() {
        let settled: Result<(i32, i32), StoreError> = (Ok(1), Ok(2)).settle();
        assert_eq!(settled.ok(), Some((1, 2)));
        let settled: Result<((), ()), StoreError> = (Ok(()), Err(StoreError::broken("x"))).settle();
        assert!(settled.is_err());
    }
}
