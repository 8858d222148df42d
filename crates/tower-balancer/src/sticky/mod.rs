//! Session affinity: a session keeps landing on the member that holds it.
//!
//! Why: in the seed cluster each Identity Server node keeps its own HTTP sessions; a user
//! logged in on node1 who lands on node2 is logged out. Apache solves this with
//! `stickysession=JSESSIONID|jsessionid` and the ROUTEID cookie recipe; [`StickyLayer`] does
//! the same, statelessly (the route lives in the cookie, so any number of balancer instances
//! agree without sharing memory), and without Apache's pitfalls:
//!
//! - **Sources**, in this order: the URL (`;jsessionid=ID.node1` path parameter, then
//!   `?jsessionid=`), the balancer's cookie (`ROUTEID`), the route suffix of application
//!   session cookies (`JSESSIONID=ID.node1`). Like Apache, a session id's route is everything
//!   after its **first** separator (`.` by default; `None` uses the whole value), and the URL
//!   wins over cookies. Unlike Apache, names match exactly (`xjsessionid=` is not
//!   `jsessionid=`), quoted values are unquoted, and the first of repeated cookies wins.
//! - **Validation**: a route is used only when it names a registered member; anything else is
//!   no route, and the request is balanced normally. A route is never dialled.
//! - **Opaque cookie**: by default the balancer's cookie holds an HMAC token, not a member id
//!   or address; forged or altered tokens are ignored. Keys rotate (first signs, all verify).
//!   With no keys configured a random key is made per process: cookies then do not survive a
//!   restart or work across instances, so configure keys in production.
//!   [`plain`](StickyConfigBuilder::plain) writes Apache's clear `.node1` instead.
//! - **Member states**: the pinned request is sent to its member while it can serve (a
//!   draining member still serves its sessions); otherwise the strategy picks and the cookie
//!   is re-issued, or with [`strict`](StickyConfigBuilder::strict) the answer is 503 (Apache
//!   `nofailover=On`). A member's redirect route (Apache `redirect=`) is followed first.
//! - **Set-Cookie** is added only when the member that served differs from the route carried,
//!   never twice, and [`RouteChanged`] tells the application and logs.

mod config;
mod extensions;
mod future;
mod layer;
pub(crate) mod route;
mod service;
mod token;

pub use config::{
    CookieAttributes, CookieMode, StickyConfig, StickyConfigBuilder, StickyConfigError,
};
pub use cookie::SameSite;
pub use extensions::RouteChanged;
pub use future::ResponseFuture;
pub use layer::StickyLayer;
pub use route::MAX_COOKIE_NAMES;
pub use service::Sticky;
pub use token::{KeyError, RouteKeys, MIN_KEY_LEN};
