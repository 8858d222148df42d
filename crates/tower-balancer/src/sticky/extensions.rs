//! What the sticky layer tells the application and logs, through response extensions.

use crate::registry::MemberId;

/// In the response when the member that served differs from the route the request carried
/// (Apache's `BALANCER_ROUTE_CHANGED`): the session moved, usually because its member went
/// down, and the application may want to log it or ask the user to log in again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChanged {
    /// The route the request carried.
    pub from: MemberId,
    /// The member that served it.
    pub to: MemberId,
}
