// proxyattn/proxyattn.h: the one header to include.
#pragma once

#include "proxyattn/config.h"
#include "proxyattn/device.h"
#include "proxyattn/plan.h"
#include "proxyattn/prefill.h"
#include "proxyattn/problem.h"
#include "proxyattn/types.h"
#include "proxyattn/version.h"
