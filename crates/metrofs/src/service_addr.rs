//! The floating service address: one IPv4 address that hosts mount, held by whichever array
//! serves (config `[service] address = "IP/PREFIX"`, `interface = "NAME"`).
//!
//! Contract:
//! - [`ServiceAddress::activate`] adds the address to the interface when it is missing (as a
//!   secondary address beside the interface's own, so the array's outgoing connections keep
//!   their usual source), then announces it with gratuitous ARP: one frame at once, then
//!   [`ANNOUNCE_REPEATS`] more [`ANNOUNCE_INTERVAL_MS`] apart from a background task. Hosts
//!   that knew the address at the other array's MAC move to this one on the first frame they
//!   receive; a single frame can be missed (DESIGN.md measured a libnfs writer resuming in
//!   30–60 ms with the announcement, once ~1 s when the first frame was missed, and 34–49 s
//!   without any: the neighbour cache's expiry), hence the repeats.
//! - [`ServiceAddress::deactivate`] stops the pending announcements and removes the address
//!   when present. Neither call fails when there is nothing to do: both are idempotent.
//! - [`ServiceAddress::held`] asks the kernel, not a flag: after a crash the address may still
//!   be on the interface, and a restarting array must be able to see (and drop) it.
//!
//! Both run in-process over netlink (`rtnetlink`) and an `AF_PACKET` socket (`pnet_datalink`):
//! no `ip`/`arping` binaries to find, no output to parse, and errors that say what failed.
//! Everything acts in the network namespace of the calling process (the daemon runs whole
//! inside one). IPv4 only: IPv6 would announce with unsolicited neighbour advertisements,
//! which nothing here sends yet, so an IPv6 address is refused by [`ServiceAddress::new`].

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use pnet_datalink::{Channel, DataLinkSender, NetworkInterface};

/// Gratuitous ARP frames sent after the first one.
pub const ANNOUNCE_REPEATS: u32 = 3;
/// Pause between two announcements.
pub const ANNOUNCE_INTERVAL_MS: u64 = 1000;
/// Longest interface name Linux accepts (`IFNAMSIZ` 16, less the terminating NUL).
pub const INTERFACE_NAME_LEN_MAX: usize = 15;

/// EtherType of ARP.
const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv4 (ARP's protocol type).
const ETHERTYPE_IPV4: u16 = 0x0800;
/// ARP hardware type Ethernet.
const ARP_HTYPE_ETHERNET: u16 = 1;
/// ARP operation "request": an announcement (RFC 5227 §2.3) is a request whose sender and
/// target protocol addresses are both the announced address.
const ARP_OP_REQUEST: u16 = 1;
/// An Ethernet header (14) and an IPv4-over-Ethernet ARP body (28).
const GARP_FRAME_LEN: usize = 42;

/// One floating address on one interface of this host.
#[derive(Debug, Clone)]
pub struct ServiceAddress {
    addr: Ipv4Addr,
    prefix_len: u8,
    interface: String,
    /// Bumped by each activate and deactivate; a background announcer goes on only while the
    /// generation it was started with is current, so a deactivate (or a newer activate)
    /// silences it.
    generation: Arc<AtomicU64>,
}

impl ServiceAddress {
    /// Validates `cidr` (`IPv4/PREFIX`, prefix 1..=32, a unicast address) and `interface` (a
    /// Linux interface name). Whether the interface exists is checked by
    /// [`ServiceAddress::check_interface`] and by each call, not here.
    pub fn new(cidr: &str, interface: &str) -> Result<Self, String> {
        let (ip, prefix) = cidr.split_once('/').ok_or_else(|| {
            format!("service address {cidr:?}: expected IPv4/PREFIX, e.g. \"10.0.0.100/24\"")
        })?;
        let ip: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("service address {cidr:?}: {ip:?} is not an IP address"))?;
        let IpAddr::V4(addr) = ip else {
            return Err(format!(
                "service address {cidr:?}: only IPv4 is supported (an IPv6 address would need \
                 neighbour advertisements, which are not sent yet)"
            ));
        };
        let prefix_len: u8 = prefix.trim().parse().map_err(|_| {
            format!("service address {cidr:?}: prefix {prefix:?} is not a number from 1 to 32")
        })?;
        if !(1..=32).contains(&prefix_len) {
            return Err(format!(
                "service address {cidr:?}: prefix {prefix_len} is out of range: expected 1 to 32"
            ));
        }
        if addr.is_unspecified()
            || addr.is_loopback()
            || addr.is_multicast()
            || addr.is_broadcast()
            || addr.is_link_local()
        {
            return Err(format!(
                "service address {cidr:?}: {addr} cannot be a service address: expected a \
                 unicast address that hosts route to (not unspecified, loopback, multicast, \
                 broadcast or link-local)"
            ));
        }
        if prefix_len < 31 {
            let host_bits = u32::MAX >> prefix_len;
            let host = u32::from(addr) & host_bits;
            if host == 0 || host == host_bits {
                return Err(format!(
                    "service address {cidr:?}: {addr} is the network or broadcast address of \
                     its /{prefix_len}: expected a host address"
                ));
            }
        }
        if interface.is_empty()
            || interface.len() > INTERFACE_NAME_LEN_MAX
            || interface == "."
            || interface == ".."
            || interface
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "service interface {interface:?}: expected a network interface name of 1 to \
                 {INTERFACE_NAME_LEN_MAX} characters without '/', ':' or spaces, e.g. \"eth0\""
            ));
        }
        Ok(Self {
            addr,
            prefix_len,
            interface: interface.to_owned(),
            generation: Arc::new(AtomicU64::new(0)),
        })
    }

    #[allow(dead_code)] // the daemon logs and the API may show it; the tests read it
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    #[allow(dead_code)] // the daemon logs and the API may show it; the tests read it
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    #[allow(dead_code)] // the daemon logs and the API may show it; the tests read it
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The interface exists in this network namespace and has an Ethernet address (needed for
    /// the announcements). The daemon can call it at start to refuse a typo early.
    #[allow(dead_code)] // for the daemon (a check at start, a metric); the tests use it
    pub fn check_interface(&self) -> Result<(), String> {
        self.interface_info().map(|_| ())
    }

    /// Whether the address is on the interface now (asks the kernel).
    #[allow(dead_code)] // for the daemon (a check at start, a metric); the tests use it
    pub fn held(&self) -> bool {
        pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == self.interface)
            .is_some_and(|i| i.ips.iter().any(|n| n.ip() == IpAddr::V4(self.addr)))
    }

    /// Adds the address if it is missing, sends the first gratuitous ARP frame, and leaves
    /// [`ANNOUNCE_REPEATS`] more to a background task (which needs a tokio runtime: this is
    /// async). Idempotent: called while held, it announces again.
    pub async fn activate(&self) -> Result<(), String> {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let iface = self.interface_info()?;
        let mac = iface
            .mac
            .filter(|m| m.octets() != [0; 6])
            .ok_or_else(|| {
                format!(
                    "service interface {}: it has no Ethernet address to announce {} with",
                    self.interface, self.addr
                )
            })?
            .octets();
        let (handle, conn) = Netlink::open()?;
        let present = handle.find(iface.index, self.addr).await;
        let added = match present {
            Ok(found) if !found.is_empty() => false,
            Ok(_) => {
                handle
                    .add(iface.index, self.addr, self.prefix_len)
                    .await
                    .map_err(|e| {
                        format!(
                            "adding service address {}/{} to {}: {e}",
                            self.addr, self.prefix_len, self.interface
                        )
                    })?;
                true
            }
            Err(e) => {
                return Err(format!(
                    "listing the addresses of {} (to add service address {}): {e}",
                    self.interface, self.addr
                ))
            }
        };
        drop(handle);
        conn.abort();

        // The first announcement at once: the one that moves hosts within milliseconds.
        let mut tx = open_sender(&iface)?;
        let frame = garp_frame(mac, self.addr);
        send_frame(tx.as_mut(), &frame).map_err(|e| {
            format!(
                "announcing service address {} on {} (gratuitous ARP): {e}",
                self.addr, self.interface
            )
        })?;
        tracing::info!(
            address = %self.addr,
            interface = %self.interface,
            added,
            "service address active, announced by gratuitous ARP ({} more to follow)",
            ANNOUNCE_REPEATS
        );

        let current = self.generation.clone();
        let (addr, name) = (self.addr, self.interface.clone());
        tokio::spawn(async move {
            for n in 1..=ANNOUNCE_REPEATS {
                tokio::time::sleep(Duration::from_millis(ANNOUNCE_INTERVAL_MS)).await;
                if current.load(Ordering::SeqCst) != generation {
                    return;
                }
                // A failed repeat is logged, not fatal: the address is held and the first
                // frame went out; a host that missed every frame re-resolves by itself later.
                if let Err(e) = send_frame(tx.as_mut(), &frame) {
                    tracing::warn!(address = %addr, interface = %name, "gratuitous ARP repeat {n} failed: {e}");
                }
            }
        });
        Ok(())
    }

    /// Stops pending announcements and removes the address if it is on the interface. A
    /// missing interface is no error (nothing can be held on it).
    pub async fn deactivate(&self) -> Result<(), String> {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let Some(iface) = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == self.interface)
        else {
            return Ok(());
        };
        let (handle, conn) = Netlink::open()?;
        let result = async {
            let found = handle.find(iface.index, self.addr).await.map_err(|e| {
                format!(
                    "listing the addresses of {} (to remove service address {}): {e}",
                    self.interface, self.addr
                )
            })?;
            let removed = !found.is_empty();
            for msg in found {
                match handle.0.address().del(msg).execute().await {
                    Ok(()) => {}
                    // Removed by somebody else in between: the goal holds.
                    Err(rtnetlink::Error::NetlinkError(m))
                        if m.to_io().raw_os_error() == Some(EADDRNOTAVAIL) => {}
                    Err(e) => {
                        return Err(format!(
                            "removing service address {} from {}: {e}",
                            self.addr, self.interface
                        ))
                    }
                }
            }
            Ok(removed)
        }
        .await;
        drop(handle);
        conn.abort();
        let removed = result?;
        tracing::info!(address = %self.addr, interface = %self.interface, removed, "service address inactive");
        Ok(())
    }

    fn interface_info(&self) -> Result<NetworkInterface, String> {
        pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == self.interface)
            .ok_or_else(|| {
                format!(
                    "service interface {:?} does not exist on this host (see `ip link`)",
                    self.interface
                )
            })
    }
}

/// `EADDRNOTAVAIL`: what the kernel answers when deleting an address that is not there.
const EADDRNOTAVAIL: i32 = 99;
/// `EEXIST`: adding an address that is there already.
const EEXIST: i32 = 17;

/// A netlink route socket, its connection task running on the current runtime.
struct Netlink(rtnetlink::Handle);

impl Netlink {
    fn open() -> Result<(Self, tokio::task::JoinHandle<()>), String> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| format!("opening a netlink route socket: {e}"))?;
        Ok((Self(handle), tokio::spawn(conn)))
    }

    /// The interface's address messages for `addr` (empty when it is not there).
    async fn find(
        &self,
        index: u32,
        addr: Ipv4Addr,
    ) -> Result<Vec<rtnetlink::packet_route::address::AddressMessage>, rtnetlink::Error> {
        self.0
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(IpAddr::V4(addr))
            .execute()
            .try_collect()
            .await
    }

    async fn add(
        &self,
        index: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), rtnetlink::Error> {
        match self
            .0
            .address()
            .add(index, IpAddr::V4(addr), prefix_len)
            .execute()
            .await
        {
            // Added by somebody else since we looked: it is there, which is the goal.
            Err(rtnetlink::Error::NetlinkError(m)) if m.to_io().raw_os_error() == Some(EEXIST) => {
                Ok(())
            }
            r => r,
        }
    }
}

/// An `AF_PACKET` socket bound to the interface, for sending whole Ethernet frames.
fn open_sender(iface: &NetworkInterface) -> Result<Box<dyn DataLinkSender>, String> {
    let config = pnet_datalink::Config {
        // Sending only: no need to see other hosts' frames.
        promiscuous: false,
        write_timeout: Some(Duration::from_millis(ANNOUNCE_INTERVAL_MS)),
        ..pnet_datalink::Config::default()
    };
    match pnet_datalink::channel(iface, config) {
        // The receiving half is dropped at once; the socket lives as long as the sender.
        Ok(Channel::Ethernet(tx, _rx)) => Ok(tx),
        Ok(_) => Err(format!("interface {}: not an Ethernet channel", iface.name)),
        Err(e) => Err(format!(
            "opening a packet socket on {} for gratuitous ARP (needs CAP_NET_RAW): {e}",
            iface.name
        )),
    }
}

fn send_frame(tx: &mut dyn DataLinkSender, frame: &[u8]) -> std::io::Result<()> {
    tx.send_to(frame, None)
        .unwrap_or_else(|| Err(std::io::Error::other("the packet socket sent nothing")))
}

/// A gratuitous ARP announcement of `addr` at `mac`: broadcast, ARP request with sender and
/// target protocol address both `addr` and an empty target hardware address (RFC 5227 §2.3).
/// A Linux host that has `addr` in its neighbour cache replaces the old MAC on receipt, its
/// lock time notwithstanding (the kernel's `arp_is_garp`).
pub fn garp_frame(mac: [u8; 6], addr: Ipv4Addr) -> [u8; GARP_FRAME_LEN] {
    let mut f = [0u8; GARP_FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&ARP_HTYPE_ETHERNET.to_be_bytes());
    f[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&ARP_OP_REQUEST.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&addr.octets());
    // f[32..38]: target hardware address, zero in an announcement.
    f[38..42].copy_from_slice(&addr.octets());
    f
}

/// The announced address of a gratuitous ARP frame (`garp_frame`'s shape, request or reply):
/// `Some(addr)` when sender and target protocol addresses are equal.
#[cfg(test)]
pub fn garp_address(frame: &[u8]) -> Option<Ipv4Addr> {
    if frame.len() < GARP_FRAME_LEN || frame[12..14] != ETHERTYPE_ARP.to_be_bytes() {
        return None;
    }
    if frame[16..18] != ETHERTYPE_IPV4.to_be_bytes() || frame[18] != 6 || frame[19] != 4 {
        return None;
    }
    let spa = Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]);
    let tpa = Ipv4Addr::new(frame[38], frame[39], frame[40], frame[41]);
    (spa == tpa).then_some(spa)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_accepts_a_host_address_and_refuses_bad_input() {
        let s = ServiceAddress::new("10.78.0.100/24", "eth0").expect("valid");
        assert_eq!(
            (s.addr(), s.prefix_len(), s.interface()),
            (Ipv4Addr::new(10, 78, 0, 100), 24, "eth0")
        );
        ServiceAddress::new("192.168.1.7/32", "br-lan.10").expect("a /32 is a host address");
        for (cidr, iface, says) in [
            ("10.78.0.100", "eth0", "expected IPv4/PREFIX"),
            ("10.78.0.300/24", "eth0", "is not an IP address"),
            ("fd00::1/64", "eth0", "only IPv4"),
            ("10.78.0.100/33", "eth0", "out of range"),
            ("10.78.0.100/0", "eth0", "out of range"),
            ("10.78.0.100/x", "eth0", "is not a number"),
            ("127.0.0.5/8", "eth0", "cannot be a service address"),
            ("224.0.0.1/4", "eth0", "cannot be a service address"),
            ("0.0.0.0/8", "eth0", "cannot be a service address"),
            ("169.254.1.1/16", "eth0", "cannot be a service address"),
            ("10.78.0.0/24", "eth0", "network or broadcast"),
            ("10.78.0.255/24", "eth0", "network or broadcast"),
            ("10.78.0.100/24", "", "interface name"),
            ("10.78.0.100/24", "a-very-long-interface", "interface name"),
            ("10.78.0.100/24", "eth0:1", "interface name"),
            ("10.78.0.100/24", "eth 0", "interface name"),
        ] {
            let e = ServiceAddress::new(cidr, iface).expect_err(cidr);
            assert!(e.contains(says), "{cidr} {iface:?}: {e}");
        }
    }

    #[test]
    fn garp_frame_is_an_announcement_of_the_address() {
        let mac = [2, 0, 0, 0, 0, 7];
        let addr = Ipv4Addr::new(10, 78, 0, 100);
        let f = garp_frame(mac, addr);
        assert_eq!(&f[0..6], &[0xff; 6], "broadcast");
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[22..28], &mac, "sender hardware address");
        assert_eq!(&f[32..38], &[0; 6], "target hardware address empty");
        assert_eq!(u16::from_be_bytes([f[20], f[21]]), ARP_OP_REQUEST);
        assert_eq!(garp_address(&f), Some(addr));
        let mut not = f;
        not[41] = 1;
        assert_eq!(
            garp_address(&not),
            None,
            "an ordinary request is no announcement"
        );
        assert_eq!(garp_address(&f[..41]), None);
    }

    /// A throwaway pair of namespaces (`svc-PID-N` and `svcp-PID-N`) joined by a veth pair,
    /// removed on drop.
    struct Ns {
        me: String,
        peer: String,
    }

    impl Ns {
        fn create() -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::SeqCst);
            let pid = std::process::id();
            let ns = Self {
                me: format!("svc-{pid}-{n}"),
                peer: format!("svcp-{pid}-{n}"),
            };
            for name in [&ns.me, &ns.peer] {
                let _ = ip(&["netns", "del", name]);
                ip_ok(&["netns", "add", name]);
            }
            ip_ok(&[
                "link", "add", "eth0", "netns", &ns.me, "type", "veth", "peer", "name", "eth0",
                "netns", &ns.peer,
            ]);
            ip_ok(&["-n", &ns.me, "addr", "add", "10.79.0.1/24", "dev", "eth0"]);
            ip_ok(&["-n", &ns.peer, "addr", "add", "10.79.0.2/24", "dev", "eth0"]);
            for name in [&ns.me, &ns.peer] {
                ip_ok(&["-n", name, "link", "set", "eth0", "up"]);
                ip_ok(&["-n", name, "link", "set", "lo", "up"]);
            }
            ns
        }

        /// Runs `f` on a thread moved into namespace `name` (a thread's network namespace is
        /// its own: the test process stays where it is).
        fn run_in<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
            let path = format!("/run/netns/{name}");
            std::thread::spawn(move || {
                let file = std::fs::File::open(&path).expect("open the namespace");
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&file),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("setns (root needed)");
                f()
            })
            .join()
            .expect("namespace thread")
        }
    }

    impl Drop for Ns {
        fn drop(&mut self) {
            for name in [&self.me, &self.peer] {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }

    fn ip(args: &[&str]) -> std::process::Output {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .expect("run ip (iproute2 needed)")
    }

    fn ip_ok(args: &[&str]) -> String {
        let out = ip(args);
        assert!(
            out.status.success(),
            "ip {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The peer's neighbour entry for `addr`: its MAC, if any.
    fn neigh_mac(ns: &str, addr: &str) -> Option<String> {
        let out = ip_ok(&["-n", ns, "neigh", "show", addr, "dev", "eth0"]);
        let mut words = out.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_owned)
    }

    #[test]
    fn activate_adds_and_announces_deactivate_removes() {
        let ns = Ns::create();
        let svc = ServiceAddress::new("10.79.0.100/24", "eth0").expect("valid");
        let my_mac = ip_ok(&["-n", &ns.me, "-br", "link", "show", "eth0"])
            .split_whitespace()
            .nth(2)
            .expect("mac column")
            .to_owned();
        // The peer believes the address is somewhere else (the other array's MAC): what an
        // announcement must correct.
        ip_ok(&[
            "-n",
            &ns.peer,
            "neigh",
            "replace",
            "10.79.0.100",
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "eth0",
            "nud",
            "stale",
        ]);

        // The peer listens for announcements from before the activation until all are in.
        let window =
            Duration::from_millis(ANNOUNCE_INTERVAL_MS * u64::from(ANNOUNCE_REPEATS) + 1500);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let listener = {
            let peer = ns.peer.clone();
            std::thread::spawn(move || {
                Ns::run_in(&peer, move || {
                    let iface = pnet_datalink::interfaces()
                        .into_iter()
                        .find(|i| i.name == "eth0")
                        .expect("peer eth0");
                    let config = pnet_datalink::Config {
                        read_timeout: Some(Duration::from_millis(100)),
                        promiscuous: false,
                        ..pnet_datalink::Config::default()
                    };
                    let Ok(Channel::Ethernet(_tx, mut rx)) = pnet_datalink::channel(&iface, config)
                    else {
                        panic!("packet socket in the peer namespace");
                    };
                    ready_tx.send(()).expect("ready");
                    let start = std::time::Instant::now();
                    let mut seen = Vec::new();
                    while start.elapsed() < window {
                        if let Ok(frame) = rx.next() {
                            if let Some(a) = garp_address(frame) {
                                seen.push((start.elapsed(), a, frame[6..12].to_vec()));
                            }
                        }
                    }
                    seen
                })
            })
        };
        ready_rx.recv().expect("listener ready");

        let (svc2, me) = (svc.clone(), ns.me.clone());
        let held_after = Ns::run_in(&me, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                assert!(!svc2.held(), "not held before");
                svc2.activate().await.expect("activate");
                let held = svc2.held();
                // Idempotent: a second activate neither fails nor adds a second address.
                svc2.activate().await.expect("activate again");
                // Let the background task send its repeats on this runtime.
                tokio::time::sleep(Duration::from_millis(
                    ANNOUNCE_INTERVAL_MS * u64::from(ANNOUNCE_REPEATS) + 500,
                ))
                .await;
                held
            })
        });
        assert!(held_after, "held after activate");
        let addrs = ip_ok(&["-n", &ns.me, "-4", "-o", "addr", "show", "dev", "eth0"]);
        assert_eq!(addrs.matches("10.79.0.100/24").count(), 1, "{addrs}");
        assert!(
            addrs.contains("10.79.0.1/24"),
            "the interface's own address stays: {addrs}"
        );

        let seen = listener.join().expect("listener");
        let ours: Vec<_> = seen.iter().filter(|(_, a, _)| *a == svc.addr()).collect();
        // Two activations: two immediate frames, and the second one's repeats (the first's
        // were silenced by it).
        assert!(
            ours.len() > usize::try_from(ANNOUNCE_REPEATS).expect("small"),
            "announcements seen: {seen:?}"
        );
        let mac_bytes: Vec<u8> = my_mac
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).expect("hex"))
            .collect();
        assert!(
            ours.iter().all(|(_, _, m)| *m == mac_bytes),
            "sent from {my_mac}: {seen:?}"
        );
        let spread = ours.last().expect("some").0 - ours[0].0;
        assert!(
            spread >= Duration::from_millis(ANNOUNCE_INTERVAL_MS),
            "repeats come later, not in one burst: {seen:?}"
        );
        assert_eq!(
            neigh_mac(&ns.peer, "10.79.0.100").as_deref(),
            Some(my_mac.as_str()),
            "the peer's neighbour cache moved to the announcer"
        );

        let (svc3, me) = (svc.clone(), ns.me.clone());
        let held_after = Ns::run_in(&me, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                svc3.deactivate().await.expect("deactivate");
                svc3.deactivate()
                    .await
                    .expect("deactivate again (nothing to do)");
                svc3.held()
            })
        });
        assert!(!held_after, "not held after deactivate");
        let addrs = ip_ok(&["-n", &ns.me, "-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(!addrs.contains("10.79.0.100"), "{addrs}");
        assert!(addrs.contains("10.79.0.1/24"), "{addrs}");
    }

    #[test]
    fn a_missing_interface_is_named() {
        let ns = Ns::create();
        let svc = ServiceAddress::new("10.79.0.100/24", "nosuch0").expect("valid syntax");
        let (e, d) = Ns::run_in(&ns.me, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async { (svc.activate().await, svc.deactivate().await) })
        });
        let e = e.expect_err("no such interface");
        assert!(e.contains("\"nosuch0\" does not exist"), "{e}");
        d.expect("deactivate on a missing interface has nothing to do");
    }
}
