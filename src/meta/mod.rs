//! Meta's protocol: the inbound webhook (wire types, signature), the Cloud API client (outbound
//! wire, pacing trait) and the 24-hour customer-service window. May import ops, config, domain.

pub mod cloud_api;
pub mod flows;
pub mod webhook;
pub mod window;
