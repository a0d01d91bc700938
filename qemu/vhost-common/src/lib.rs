//! `monolith-vhost-common`: what Monolith's vhost-user device models share. So far one
//! thing, [`serve`]: the socket's lifetime, the same for the video decoder and the PASR
//! controller.

pub mod serve;

pub use serve::serve;
