//! The `appliance` system user the .deb creates and the service runs as: looking it up
//! (from /etc/passwd and /etc/group, so it works in a chroot), judging whether it can read
//! or write a file, and handing files over to it.
//!
//! Used by `--init` (run as root, it makes what it creates readable by the service) and
//! by `doctor` (permission checks). Owns no state.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The name of the service account (see `systemd/appliance.service`).
pub const SERVICE_USER: &str = "appliance";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Primary and supplementary groups.
    pub groups: Vec<u32>,
}

/// Looks `name` up in `<root>/etc/passwd` and `<root>/etc/group`.
pub fn lookup_in(root: &Path, name: &str) -> Option<SystemUser> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
    let (uid, gid) = passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })?;
    let mut groups = vec![gid];
    if let Ok(group) = std::fs::read_to_string(root.join("etc/group")) {
        for line in group.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 4
                && f[3].split(',').any(|member| member == name)
                && let Ok(g) = f[2].parse::<u32>()
                && !groups.contains(&g)
            {
                groups.push(g);
            }
        }
    }
    Some(SystemUser {
        name: name.to_string(),
        uid,
        gid,
        groups,
    })
}

/// The service user on this host, when the package created it.
pub fn service_user() -> Option<SystemUser> {
    lookup_in(Path::new("/"), SERVICE_USER)
}

/// The id of group `name`, from /etc/group.
pub fn group_id(name: &str) -> Option<u32> {
    let group = std::fs::read_to_string("/etc/group").ok()?;
    group.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 3 && f[0] == name).then(|| f[2].parse().ok())?
    })
}

impl SystemUser {
    /// The permission bits (r=4, w=2, x=1) that apply to this user for `meta`.
    fn bits(&self, meta: &Metadata) -> u32 {
        let mode = meta.mode();
        if self.uid == 0 {
            return 7;
        }
        if meta.uid() == self.uid {
            (mode >> 6) & 7
        } else if self.groups.contains(&meta.gid()) {
            (mode >> 3) & 7
        } else {
            mode & 7
        }
    }

    pub fn can_read(&self, meta: &Metadata) -> bool {
        let need = if meta.is_dir() { 5 } else { 4 };
        self.bits(meta) & need == need
    }

    pub fn can_write(&self, meta: &Metadata) -> bool {
        let need = if meta.is_dir() { 3 } else { 2 };
        self.bits(meta) & need == need
    }

    /// True when every directory above `path` lets this user through (search bit).
    pub fn can_traverse_to(&self, path: &Path) -> bool {
        path.ancestors()
            .skip(1)
            .all(|dir| std::fs::metadata(dir).map_or(true, |m| self.bits(&m) & 1 == 1))
    }
}

/// Changes owner and group of `path` (not following a symlink).
pub fn chown(path: &Path, uid: Option<u32>, gid: Option<u32>) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, uid, gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_users_and_groups_and_judges_access() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nappliance:x:990:990::/var/lib/appliance:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("etc/group"),
            "root:x:0:\nappliance:x:990:\nasterisk:x:120:asterisk,appliance\nother:x:7:someone\n",
        )
        .unwrap();
        let user = lookup_in(root.path(), "appliance").unwrap();
        assert_eq!((user.uid, user.gid), (990, 990));
        assert_eq!(user.groups, vec![990, 120]);
        assert!(lookup_in(root.path(), "nobody-here").is_none());

        use std::os::unix::fs::PermissionsExt;
        let file = root.path().join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        // Owned by root (the test runs as root or as someone else): only "other" bits or
        // a matching group apply to uid 990.
        let meta = std::fs::metadata(&file).unwrap();
        assert!(!user.can_read(&meta));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert!(user.can_read(&meta) && !user.can_write(&meta));
    }
}
