/* sandbox_uid.c — per-instance uids: unique among the live instances of this process, and of
 * every executor on the host through a shared lock file (one byte per uid slot). */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "sandbox-int.h"

static struct {
    pthread_mutex_t lock;
    uint64_t used[SB_UID_SLOTS / 64];
    int lock_fd;          /* byte i OFD-locked while uid slot i is ours, -1 if none */
} uids = { .lock = PTHREAD_MUTEX_INITIALIZER, .lock_fd = -1 };

/* Opens <base>/minilambda-sandbox-uids.lock. A fresh open file description: OFD locks of a
 * forked copy of us must not count as ours. */
void sb_uid_lock_open(const char *base)
{
    char lock[PATH_MAX];

    if (uids.lock_fd >= 0)
        close(uids.lock_fd);
    uids.lock_fd = -1;
    if (ml_snprintf(lock, sizeof(lock), "%s/minilambda-sandbox-uids.lock", base) == ML_OK)
        uids.lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
}

/* false: no lock file, uids are unique within this executor only. */
bool sb_uid_host_wide(void)
{
    return uids.lock_fd >= 0;
}

/* Claims byte `slot` of the host-wide lock file (other executors on this host skip it); the
 * kernel drops the lock if this process dies. true without a lock file (in-process only). */
static bool uid_claim(int slot, short type)
{
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = slot, .l_len = 1 };

    return uids.lock_fd < 0 || fcntl(uids.lock_fd, F_OFD_SETLK, &fl) == 0;
}

/* A uid no other live instance uses, in this process or another executor on the host. */
int sb_uid_alloc(unsigned *uid)
{
    int slot = -1;

    pthread_mutex_lock(&uids.lock);
    for (unsigned i = 0; i < SB_UID_SLOTS && slot < 0; i++) {
        uint64_t bit = UINT64_C(1) << (i % 64);
        if (uids.used[i / 64] & bit || !uid_claim((int)i, F_WRLCK))
            continue;
        uids.used[i / 64] |= bit;
        slot = (int)i;
    }
    pthread_mutex_unlock(&uids.lock);
    if (slot >= 0)
        *uid = SB_UID_BASE + (unsigned)slot;
    return slot;
}

void sb_uid_free(int slot)
{
    if (slot < 0)
        return;
    pthread_mutex_lock(&uids.lock);
    (void)uid_claim(slot, F_UNLCK);
    uids.used[slot / 64] &= ~(UINT64_C(1) << (slot % 64));
    pthread_mutex_unlock(&uids.lock);
}
