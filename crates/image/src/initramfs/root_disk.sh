# --- A root disk (`firepit.root=DEV` on the kernel command line; firepit-qemu adds it) ---------
# The disk (the VM's private copy-on-write overlay) becomes the root: firepit's agent runs inside
# it (chrooted, started from this initramfs, nothing installed on the disk) and the disk's own init
# takes over PID 1 and the console. A disk without an init (`firepit.init=none`, or no executable
# at `firepit.init=PATH`, default /sbin/init) keeps this init as PID 1 and gets a shell on the
# console inside its root: its /bin/sh, else firepit's busybox sh.
# `firepit.console=off` (the VM's console is nobody's): no shell on the console at all; PID 1 only
# idles (and reaps) after the readiness line.
root=
rinit=/sbin/init
console=on
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    firepit.root=*) root="${arg#firepit.root=}" ;;
    firepit.init=*) rinit="${arg#firepit.init=}" ;;
    firepit.console=*) console="${arg#firepit.console=}" ;;
  esac
done
idle() { while true; do sleep 3600; done; }
if [ -n "$root" ]; then
  fail() { echo "firepit-init: $*"; sleep 0.2; reboot -f; }
  i=0; while [ ! -b "$root" ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done
  [ -b "$root" ] || fail "no root disk $root (virtio_blk not loaded? the kernel must be the one this initramfs was built for: $(uname -r))"
  mkdir -p /newroot
  mount -t ext4 -o rw,noatime "$root" /newroot || fail "cannot mount the root disk $root as ext4"
  for d in dev proc sys run; do
    [ -d "/newroot/$d" ] || mkdir -p "/newroot/$d" || fail "cannot create /$d on the root disk"
    mount -o move "/$d" "/newroot/$d" || fail "cannot move /$d into the root disk"
  done
  umount /tmp 2>/dev/null
  # The per-clone identity (machine id, hostname) lives in RAM, bind-mounted over the disk's files
  # (as systemd does on a read-only /etc): setting it after a restore touches no disk.
  mkdir -p /newroot/run/firepit /newroot/etc
  for f in machine-id hostname; do
    [ -f "/newroot/etc/$f" ] || : > "/newroot/etc/$f"
    cat "/newroot/etc/$f" > "/newroot/run/firepit/$f"
    mount -o bind "/newroot/run/firepit/$f" "/newroot/etc/$f"
  done
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  # /proc/1/root is this initramfs: the agent and busybox are run from here, inside the disk's root.
  bb=/proc/1/root/bin/busybox
  chroot /newroot /proc/1/root/sbin/firepit-agent --ready-file /run/firepit/agent.ready \
    </newroot/dev/null >/newroot/run/firepit/agent.log 2>&1 &
  i=0; while [ ! -e /newroot/run/firepit/agent.ready ] && [ $i -lt 100 ]; do sleep 0.02; i=$((i+1)); done
  if [ "$rinit" != none ] && chroot /newroot $bb test -x "$rinit"; then
    echo @READY@
    exec switch_root /newroot "$rinit"
  fi
  [ "$console" = off ] && { echo @READY@; idle; }
  if chroot /newroot $bb test -x /bin/sh; then sh=/bin/sh; else sh="$bb sh"; fi
  # The console shell starts before the readiness line, so a snapshot template is saved with it
  # waiting for input: clones do not start it again, and typed input meets a ready shell.
  # (setsid, chroot and cttyhack exec in turn: $! ends up being the shell.)
  shell() { setsid chroot /newroot $bb cttyhack $sh & pid=$!; }
  shell
  i=0
  while [ $i -lt 200 ]; do
    cmd=$(tr '\0' ' ' < "/newroot/proc/$pid/cmdline" 2>/dev/null)
    state=$(cut -d' ' -f3 "/newroot/proc/$pid/stat" 2>/dev/null)
    [ "$cmd" = "$sh " ] && [ "$state" = S ] && break
    sleep 0.01; i=$((i+1))
  done
  echo @READY@
  while true; do wait $pid; sleep 0.1; shell; done
fi
