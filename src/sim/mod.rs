//! Simulators of the two remote sides, faithful to `reference/*.md`: product code used by the
//! tests, by `demo` and by `simulate`.

pub mod keys;
pub mod vonage;
pub mod wechat;
