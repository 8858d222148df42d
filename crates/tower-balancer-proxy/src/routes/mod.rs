//! Routes and virtual hosts for the configuration file's balancer: which balancer a request
//! goes to, or whether the front answers it itself (a fixed response, a redirect).
//!
//! Why here and not for library users: a Rust service already has a router (axum's, or its
//! own), and the builder's [`Proxy`](crate::proxy::Proxy) is a service to nest in it. The
//! operators of the binary have only the file, so the file carries what Apache's
//! `<VirtualHost>`s, `ProxyPass` lines, `Redirect` and nginx's `location`s say.

mod normalize;
mod paths;
mod service;
mod table;

pub(crate) use normalize::normalize;
pub(crate) use service::Router;
pub(crate) use table::{
    host_matches, prefix_matches, Action, PathMatch, Route, RouteTable, VirtualHost,
};
