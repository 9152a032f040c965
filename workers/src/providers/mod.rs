//! Clients of outside services that the workers (and, through the domain's ports, the API) use.

pub mod stripe;
