//! The guest's users and groups, read once per sandbox from its `/etc/passwd` and `/etc/group`:
//! envd answers with owner and group *names* and resolves paths against a user's home.

use std::collections::HashMap;

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// Users and group names of one guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    users: Vec<User>,
    groups: HashMap<u32, String>,
}

impl Users {
    /// Parses the two files' contents (lines that do not parse are skipped).
    ///
    /// ```
    /// let users = firepit_e2b::users::Users::parse("user:x:1000:1000::/home/user:/bin/bash\n", "user:x:1000:\n");
    /// assert_eq!(users.by_name("user").unwrap().home, "/home/user");
    /// assert_eq!(users.user_name(1000), "user");
    /// assert_eq!(users.group_name(1000), "user");
    /// assert_eq!(users.user_name(4242), "4242");
    /// ```
    pub fn parse(passwd: &str, group: &str) -> Self {
        let users = passwd
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                let [name, _, uid, gid, _, home, ..] = fields.as_slice() else { return None };
                Some(User {
                    name: (*name).to_owned(),
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                    home: (*home).to_owned(),
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                let [name, _, gid, ..] = fields.as_slice() else { return None };
                Some((gid.parse().ok()?, (*name).to_owned()))
            })
            .collect();
        Self { users, groups }
    }

    /// The user called `name`.
    pub fn by_name(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|user| user.name == name)
    }

    /// The name of `uid` (the number when it has none).
    pub fn user_name(&self, uid: u32) -> String {
        self.users.iter().find(|user| user.uid == uid).map_or_else(|| uid.to_string(), |u| u.name.clone())
    }

    /// The name of `gid` (the number when it has none).
    pub fn group_name(&self, gid: u32) -> String {
        self.groups.get(&gid).cloned().unwrap_or_else(|| gid.to_string())
    }
}
