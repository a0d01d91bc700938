//! Video: the clip, its access units, and the player that decodes them onto the screen
//! (policy, host-tested; the board's glue is `crate::video_service`).
#![forbid(unsafe_code)]

pub mod annexb;
pub mod boot;
pub mod clip;
pub mod player;

#[cfg(test)]
mod tests;
