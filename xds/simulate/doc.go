// Package simulate answers, for a set of xDS resources and one request, what an Envoy proxy or a
// grpc-go xDS client or server would do with it: which listener, filter chain, virtual host and
// route match; which cluster (or weighted clusters) it goes to; which endpoints are eligible at
// each priority and with what locality weight; or why it is refused (no listener, no route, an
// RBAC policy, a direct response).
//
// It covers the parts of Envoy's behaviour that crossgate's configuration uses, and says so
// when it meets something else, rather than guessing. It is used by tests and by the sandbox's
// stand-in proxy, never by the controller.
//
// It imports Envoy's API types and the IR-free xds/translate names only.
package simulate
