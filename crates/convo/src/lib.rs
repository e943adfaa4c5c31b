//! The parts of the `convo` binary that its tests share: `connect` opens whatever database a
//! `--database-url` names, so a test observes a server's database through the store traits,
//! whichever engine it is.

pub mod db;
