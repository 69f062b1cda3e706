/* loopcore: the asyncio event-loop API in C, on libuv. The umbrella header. */
#ifndef LOOPCORE_H
#define LOOPCORE_H

#include "loopcore/errno.h"
#include "loopcore/loop.h"
#include "loopcore/future.h"
#include "loopcore/task.h"
#include "loopcore/stream.h"
#include "loopcore/threadsafe.h"
#include "loopcore/group.h"
#include "loopcore/executor.h"

#endif
