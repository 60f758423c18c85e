//! Who may do what on the control socket, and the socket's file permissions.
//!
//! Two gates. The file: the socket's directory is `0750` and the socket `0660`, owned by
//! the daemon, with POSIX ACL entries that give the `[control]` groups the same access as
//! the owning group — so only root, the daemon's own group and those two groups can open
//! it at all. The peer: every connection's credentials (`SO_PEERCRED` uid, primary gid
//! and `SO_PEERGROUPS`) decide its [`Role`]: root and `admin_group` members change,
//! `read_group` members look, anyone else is refused and logged with the uid (should the
//! file gate ever be opened wider).

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{bail, Context};
use sekisho_control::Role;
use sekisho_policy::ControlSettings;

use crate::sys;

/// One configured group and its gid, if it exists on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Group {
    pub name: String,
    pub gid: Option<u32>,
}

/// The two groups of `[control]`, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Access {
    pub admin: Option<Group>,
    pub read: Option<Group>,
}

impl Access {
    /// Looks the groups up; returns warnings for groups that do not exist.
    pub(crate) fn resolve(settings: &ControlSettings) -> (Access, Vec<String>) {
        let mut warnings = Vec::new();
        let mut look = |key: &str, name: &Option<String>| {
            let name = name.as_ref()?;
            let gid = match sys::group_gid(name) {
                Ok(Some(gid)) => Some(gid),
                Ok(None) => {
                    warnings.push(format!(
                        "[control] {key} \"{name}\" does not exist on this machine: nobody is its member \
                         (create it with `groupadd {name}`)"
                    ));
                    None
                }
                Err(e) => {
                    warnings.push(format!("[control] {key} \"{name}\": cannot look the group up: {e}"));
                    None
                }
            };
            Some(Group { name: name.clone(), gid })
        };
        let admin = look("admin_group", &settings.admin_group);
        let read = look("read_group", &settings.read_group);
        (Access { admin, read }, warnings)
    }

    /// The role of a peer with `uid` and groups `gids` (primary and supplementary).
    pub(crate) fn role(&self, uid: u32, gids: &[u32]) -> Option<Role> {
        let member =
            |g: &Option<Group>| g.as_ref().and_then(|g| g.gid).is_some_and(|gid| gids.contains(&gid));
        if uid == 0 || member(&self.admin) {
            Some(Role::Admin)
        } else if member(&self.read) {
            Some(Role::Read)
        } else {
            None
        }
    }

    /// The gids that get access to the socket file.
    fn gids(&self) -> Vec<u32> {
        [&self.admin, &self.read].into_iter().flatten().filter_map(|g| g.gid).collect()
    }

    fn describe(&self) -> String {
        let name = |g: &Option<Group>| g.as_ref().map_or("(none)".to_owned(), |g| g.name.clone());
        format!("admin_group {}, read_group {}", name(&self.admin), name(&self.read))
    }
}

/// The peer's uid, pid and every gid it has.
pub(crate) struct Peer {
    pub uid: u32,
    pub pid: Option<u32>,
    pub gids: Vec<u32>,
}

/// Reads the credentials of the process at the other end of `stream`.
pub(crate) fn peer(stream: &tokio::net::UnixStream) -> io::Result<Peer> {
    use std::os::fd::AsRawFd;
    let cred = stream.peer_cred()?;
    let mut gids = sys::peer_groups(stream.as_raw_fd())?;
    gids.push(cred.gid());
    Ok(Peer { uid: cred.uid(), pid: cred.pid().and_then(|p| u32::try_from(p).ok()), gids })
}

/// Gives the `[control]` groups access to the socket and its directory (ACL), keeping the
/// modes 0660 and 0750. Where ACLs are not supported, a warning says what to do.
pub(crate) fn apply_acl(socket: &Path, access: &Access) -> Vec<String> {
    let mut warnings = Vec::new();
    let gids = access.gids();
    let dir = socket.parent().unwrap_or(Path::new("/"));
    let (uid, _) = sys::ids();
    let dir_is_ours = std::fs::metadata(dir).is_ok_and(|m| m.uid() == uid);
    if dir_is_ours {
        if let Err(e) = sys::set_acl(dir, 7, 5, &gids, 5) {
            warnings.push(format!(
                "cannot give the [control] groups access to {} by ACL ({e}); its group must then hold \
                 every operator",
                dir.display()
            ));
        }
    }
    if let Err(e) = sys::set_acl(socket, 6, 6, &gids, 6) {
        warnings.push(format!(
            "cannot give the [control] groups access to {} by ACL ({e}); only root and the daemon's group \
             can use it",
            socket.display()
        ));
    }
    tracing::info!("control socket {}: mode 0660, {}", socket.display(), access.describe());
    warnings
}

/// Binds the control socket at `path`: its directory made `0750` if the daemon creates it
/// or owns it, a stale socket left by a killed daemon removed, the socket `0660`, then the
/// ACL. Refuses to take over a socket another daemon still answers on.
pub(crate) fn bind(path: &Path, access: &Access) -> anyhow::Result<(UnixListener, Vec<String>)> {
    let dir = path.parent().context("the control socket path has no directory")?;
    let (uid, _) = sys::ids();
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("cannot create the control socket's directory {}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if meta.uid() == uid {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
            .with_context(|| format!("cannot make {} mode 0750", dir.display()))?;
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !m.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket: move it away, or set [daemon] control_socket",
                path.display()
            );
        }
        if UnixStream::connect(path).is_ok() {
            bail!(
                "another sekishod answers on {}: stop it first, or give this one another [daemon] control_socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot bind the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot make {} mode 0660", path.display()))?;
    let warnings = apply_acl(path, access);
    Ok((listener, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        let a = Access {
            admin: Some(Group { name: "a".into(), gid: Some(100) }),
            read: Some(Group { name: "r".into(), gid: Some(200) }),
        };
        assert_eq!(a.role(0, &[]), Some(Role::Admin));
        assert_eq!(a.role(1000, &[5, 100]), Some(Role::Admin));
        assert_eq!(a.role(1000, &[200]), Some(Role::Read));
        assert_eq!(a.role(1000, &[100, 200]), Some(Role::Admin));
        assert_eq!(a.role(1000, &[300]), None);
        let missing = Access { admin: Some(Group { name: "a".into(), gid: None }), read: None };
        assert_eq!(missing.role(1000, &[]), None);
        let (none, warnings) = Access::resolve(&ControlSettings {
            admin_group: Some("sekisho-no-such-group".into()),
            read_group: None,
        });
        assert_eq!(none.admin.unwrap().gid, None);
        assert!(warnings[0].contains("groupadd sekisho-no-such-group"));
    }

    #[test]
    fn the_socket_is_0660_in_a_0750_directory_and_a_stale_one_is_replaced() {
        let dir = std::env::temp_dir().join(format!("sekishod-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("ctl").join("control.sock");
        let access = Access { admin: None, read: Some(Group { name: "root".into(), gid: Some(0) }) };
        let (listener, _) = bind(&path, &access).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o660, 0o750));
        assert!(bind(&path, &access).unwrap_err().to_string().contains("another sekishod"));
        drop(listener);
        let (_again, _) = bind(&path, &access).expect("a stale socket is replaced");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
