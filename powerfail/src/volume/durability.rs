//! The durable side of the volume: fsync of files and directories, which bring the backing
//! directory up to the current state, the clean close, and the power-off, which drops whatever
//! had not been brought there. See the parent module for the two states and the staging
//! directory. Touched under the volume's mutex only.

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _};
use std::path::Path;

use super::{ArmedPowerOff, Body, Ino, Inode, Kind, Place, PowerOffReport, Volume};

impl Volume {
    /// fsync or fdatasync of `ino`: a file's content and size, or a directory's entries, become
    /// durable.
    ///
    /// # Errors
    /// ENOENT, EIO (also when the backing directory refuses a write).
    pub fn fsync(&mut self, ino: Ino) -> io::Result<()> {
        match self.inode(ino)?.kind() {
            Kind::File => self.fsync_file(ino),
            Kind::Dir => self.fsync_dir(ino),
        }
    }

    fn fsync_file(&mut self, ino: Ino) -> io::Result<()> {
        if self.file(ino)?.content.is_clean() {
            // Nothing changed: the durable content is already what the application sees (a file
            // with no backing file yet is empty on both sides).
            return Ok(());
        }
        if self.inode(ino)?.places.is_empty() {
            let path = self.staging.join(ino.0.to_string());
            let perm = self.inode(ino)?.meta.perm;
            let file = OpenOptions::new().read(true).write(true).create_new(true).mode(u32::from(perm)).open(path)?;
            self.inode_mut(ino)?.places.push(Place::Staging);
            self.file_mut(ino)?.backing = Some(file);
        }
        self.open_backing(ino)?;
        let file = self.file_mut(ino)?;
        let backing = file.backing.as_ref().expect("open_backing opened it: the file has a place");
        file.content.sync_into(backing)
    }

    fn fsync_dir(&mut self, dir: Ino) -> io::Result<()> {
        let body = self.dir(dir)?;
        if !body.loaded {
            return Ok(()); // never used: its current entries are its durable ones
        }
        let removed: Vec<(OsString, Ino)> = body
            .durable
            .iter()
            .filter(|&(name, ino)| body.current.get(name) != Some(ino))
            .map(|(name, &ino)| (name.clone(), ino))
            .collect();
        let added: Vec<(OsString, Ino)> = body
            .current
            .iter()
            .filter(|&(name, ino)| body.durable.get(name) != Some(ino))
            .map(|(name, &ino)| (name.clone(), ino))
            .collect();
        if removed.is_empty() && added.is_empty() {
            return Ok(());
        }
        if self.inode(dir)?.places.is_empty() {
            let perm = self.inode(dir)?.meta.perm;
            fs::DirBuilder::new().mode(u32::from(perm)).create(self.staging.join(dir.0.to_string()))?;
            self.inode_mut(dir)?.places.push(Place::Staging);
        }
        // Removals first, so that a name reused by another inode is free in the backing directory.
        let dir_path = self.path_of(dir)?;
        for (name, ino) in removed {
            self.detach(dir, &dir_path, &name, ino)?;
        }
        for (name, ino) in added {
            self.attach(dir, name, ino)?;
        }
        Ok(())
    }

    /// Removes the durable entry `dir/name` of `ino` from the backing directory (`dir_path` is
    /// `dir`'s backing path). An inode that keeps no other place but is still needed moves to
    /// staging; otherwise it is deleted.
    fn detach(&mut self, dir: Ino, dir_path: &Path, name: &OsStr, ino: Ino) -> io::Result<()> {
        let path = dir_path.join(name);
        self.dir_mut(dir)?.durable.remove(name);
        let inode = self.inode_mut(ino)?;
        inode.places.retain(|place| !matches!(place, Place::Entry { dir: d, name: n } if *d == dir && n == name));
        if !inode.places.is_empty() {
            return fs::remove_file(path); // a file with another durable name: drop this link only
        }
        if inode.is_needed() {
            fs::rename(&path, self.staging.join(ino.0.to_string()))?;
            self.inode_mut(ino)?.places.push(Place::Staging);
            return Ok(());
        }
        self.delete_backing(ino, &path)
    }

    /// Deletes the backing object of an inode nobody needs any more, at `path`. A directory's
    /// durable entries are detached first, so that a needed inode below it moves to staging.
    pub(super) fn delete_backing(&mut self, ino: Ino, path: &Path) -> io::Result<()> {
        let children: Option<Vec<(OsString, Ino)>> = match &self.inode(ino)?.body {
            Body::File(_) => None,
            Body::Dir(body) => Some(body.durable.iter().map(|(name, &child)| (name.clone(), child)).collect()),
        };
        match children {
            None => {
                self.file_mut(ino)?.backing = None;
                fs::remove_file(path)?;
            }
            Some(_) if !self.dir(ino)?.loaded => fs::remove_dir_all(path)?, // nothing in it is known or needed
            Some(children) => {
                for (name, child) in children {
                    self.detach(ino, path, &name, child)?;
                }
                fs::remove_dir(path)?;
            }
        }
        self.inode_mut(ino)?.places.clear();
        Ok(())
    }

    /// Gives `ino` the durable entry `dir/name` in the backing directory.
    fn attach(&mut self, dir: Ino, name: OsString, ino: Ino) -> io::Result<()> {
        let path = self.path_of(dir)?.join(&name);
        let inode = self.inode(ino)?;
        let (kind, perm) = (inode.kind(), inode.meta.perm);
        match inode.places.first().cloned() {
            None if kind == Kind::File => {
                let file =
                    OpenOptions::new().read(true).write(true).create_new(true).mode(u32::from(perm)).open(&path)?;
                self.file_mut(ino)?.backing = Some(file);
            }
            None => fs::DirBuilder::new().mode(u32::from(perm)).create(&path)?,
            Some(Place::Staging) => {
                fs::rename(self.staging.join(ino.0.to_string()), &path)?;
                self.inode_mut(ino)?.places.clear();
            }
            Some(Place::Entry { .. }) if kind == Kind::File => fs::hard_link(self.path_of(ino)?, &path)?,
            Some(Place::Entry { dir: old_dir, name: old_name }) => {
                // A directory has one place: it leaves its old durable entry (see the README on
                // renames of directories across parents).
                fs::rename(self.path_of(ino)?, &path)?;
                self.dir_mut(old_dir)?.durable.remove(&old_name);
                self.inode_mut(ino)?.places.clear();
            }
            Some(Place::Root) => unreachable!("the root is in no directory"),
        }
        self.inode_mut(ino)?.places.push(Place::Entry { dir, name: name.clone() });
        self.dir_mut(dir)?.durable.insert(name, ino);
        Ok(())
    }

    /// Makes everything durable, as `sync` does: every directory's entries, then every file.
    ///
    /// # Errors
    /// EIO after a power-off; any error of the backing directory.
    pub fn sync_all(&mut self) -> io::Result<()> {
        // Detaching a directory can move a needed inode below it to staging after its new
        // directory was already synced in the same pass, so repeat until nothing changes. Each
        // pass attaches at least what the previous one staged; a tree of depth d needs about d.
        const PASSES_MAX: usize = 1_000;
        self.live()?;
        for _ in 0..PASSES_MAX {
            let dirty: Vec<Ino> =
                self.inodes.iter().filter(|(_, inode)| is_dirty_dir(inode)).map(|(&ino, _)| ino).collect();
            if dirty.is_empty() {
                let files: Vec<Ino> = self
                    .inodes
                    .iter()
                    .filter(|(_, inode)| inode.links > 0 && inode.kind() == Kind::File)
                    .map(|(&ino, _)| ino)
                    .collect();
                for ino in files {
                    self.fsync_file(ino)?;
                    self.close_backing_if_unused(ino);
                }
                return Ok(());
            }
            for dir in dirty {
                if self.inode(dir)?.links > 0 {
                    self.fsync_dir(dir)?;
                }
            }
            // A directory with no name left is synced only to release what it holds.
            for dir in self.inodes.iter().filter(|(_, inode)| inode.links == 0).map(|(&ino, _)| ino).collect::<Vec<_>>()
            {
                self.collect(dir);
            }
        }
        panic!("sync_all did not converge in {PASSES_MAX} passes");
    }

    /// A clean unmount: syncs everything, then deletes the staging directory.
    ///
    /// # Errors
    /// As `sync_all`, and deleting the staging directory.
    pub fn close(&mut self) -> io::Result<()> {
        if self.powered_off {
            return Ok(());
        }
        self.sync_all()?;
        fs::remove_dir_all(&self.staging)
    }

    /// Loses power: every unsynced change is dropped, so the backing directory holds exactly
    /// the durable state. With `torn`, each file's last unsynced write (the last run of
    /// contiguous writes, see [`Unsynced`](crate::content::Unsynced)) first reaches its backing
    /// file in part: a prefix of random length (0 to all of it; seeded). Then the staging
    /// directory is deleted and every later operation fails with EIO.
    ///
    /// # Errors
    /// EIO when already powered off; a failed write of a torn prefix or deletion of staging.
    pub fn power_off(&mut self, torn: bool) -> io::Result<PowerOffReport> {
        self.live()?;
        self.armed = None;
        let mut report = PowerOffReport { inos: self.inodes.keys().copied().collect(), ..PowerOffReport::default() };
        let torn_result = if torn { self.tear_last_writes(&mut report) } else { Ok(()) };
        for file in self.inodes.values().filter_map(|inode| match &inode.body {
            Body::File(file) => Some(file),
            Body::Dir(_) => None,
        }) {
            report.unsynced_bytes_dropped += file.content.unsynced_bytes();
        }
        // Whatever failed above, the power is off: nothing more reaches the backing directory.
        self.inodes.clear();
        self.powered_off = true;
        torn_result?;
        fs::remove_dir_all(&self.staging)?;
        Ok(report)
    }

    /// Writes a random prefix of each file's last unsynced write into its backing file.
    fn tear_last_writes(&mut self, report: &mut PowerOffReport) -> io::Result<()> {
        let files: Vec<Ino> = self.inodes.keys().copied().collect();
        for ino in files {
            let Ok(file) = self.file(ino) else { continue };
            let Some((position, bytes)) = file.content.last_write_bytes() else { continue };
            if self.inode(ino)?.places.is_empty() {
                continue; // no backing file: nothing of it can survive
            }
            let kept = self.rng.below(bytes.len() as u64 + 1) as usize;
            self.open_backing(ino)?;
            let backing = self.file(ino)?.backing.as_ref().expect("open_backing opened it: the file has a place");
            backing.write_all_at(&bytes[..kept], position)?;
            report.torn_files += 1;
            report.torn_bytes_kept += kept as u64;
        }
        Ok(())
    }

    /// Arms a power-off that happens right after the `writes`-th write from now (at least 1):
    /// the power fails while the application is in the middle of its work, with that write
    /// in the page cache and not yet fsynced. `take_armed_outcome` returns what it did.
    ///
    /// # Errors
    /// EIO when already powered off.
    pub fn arm_power_off(&mut self, torn: bool, writes: u64) -> io::Result<()> {
        self.live()?;
        self.armed = Some(ArmedPowerOff { torn, writes_left: writes.max(1) });
        Ok(())
    }

    /// Whether a power-off is armed and has not happened yet.
    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// The outcome of an armed power-off once it happened (taken once), else `None`.
    pub fn take_armed_outcome(&mut self) -> Option<io::Result<PowerOffReport>> {
        self.armed_outcome.take()
    }
}

/// A directory still named, or not, whose durable entries differ from its current ones.
fn is_dirty_dir(inode: &Inode) -> bool {
    match &inode.body {
        Body::Dir(body) => body.loaded && body.current != body.durable && (inode.links > 0 || !inode.places.is_empty()),
        Body::File(_) => false,
    }
}
