//! Chatwoot (an agent platform reached through an API inbox): for now its built-in simulator.

pub mod sim;
