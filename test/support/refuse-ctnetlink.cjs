// Loaded into the agent with `node --require` by test/kernel/conntrack.test.ts:
// the FFI works, but a netlink socket for NETLINK_NETFILTER cannot be had (as
// under a seccomp policy or without the module), so ctnetlink is refused while
// libnftables and rtnetlink work. Wraps koffi's binding of socket() and nothing else.
const Module = require('node:module');
const NETLINK_NETFILTER = 12;
const EPROTONOSUPPORT = 93;
const load = Module._load;
let wrapped;
Module._load = function (request, ...rest) {
  const m = load.call(this, request, ...rest);
  if (request !== 'koffi') return m;
  wrapped ??= new Proxy(m, {
    get(k, name) {
      if (name !== 'load') return Reflect.get(k, name);
      return (...args) => {
        const lib = k.load(...args);
        return new Proxy(lib, {
          get(l, fname) {
            if (fname !== 'func') return Reflect.get(l, fname);
            return (decl, ...more) => {
              const fn = l.func(decl, ...more);
              if (typeof decl !== 'string' || !/^\s*int\s+socket\s*\(/.test(decl)) return fn;
              return (domain, type, protocol) => {
                if (protocol !== NETLINK_NETFILTER) return fn(domain, type, protocol);
                k.errno(EPROTONOSUPPORT);
                return -1;
              };
            };
          },
        });
      };
    },
  });
  return wrapped;
};
