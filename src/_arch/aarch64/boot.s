// Monolith entry, from QEMU `-kernel` (ELF) at EL2 or EL1.
//
// x0 may hold a DTB address (boot protocols that pass it); QEMU passes 0 for an ELF and
// puts the DTB at the start of RAM instead. x0 is kept in x19 and handed to Rust, with the
// exception level we were entered at (x20) as the second argument.
//
// Stacks: the kernel runs on SP_EL0 (EL1t) from the boot stack below __stack_top; SP_EL1
// is the separate exception stack (__exception_stack, in .bss), so a kernel stack overflow
// into the guard page still gets a working handler.

.section .text._start
.global _start
_start:
    mov     x19, x0

    // Only the boot CPU (Aff0 == 0) continues; others wait for events forever.
    // (QEMU virt keeps secondaries powered off under PSCI anyway.)
    mrs     x1, MPIDR_EL1
    and     x1, x1, #0xff
    cbnz    x1, .L_park

    // Drop from EL2 to EL1 when entered at EL2.
    mrs     x1, CurrentEL
    lsr     x1, x1, #2
    mov     x20, x1
    cmp     x1, #2
    b.ne    .L_el1

    // EL1 is AArch64; no traps of timer/counter access to EL2.
    mov     x1, #(1 << 31)
    msr     HCR_EL2, x1
    mov     x1, #3
    msr     CNTHCTL_EL2, x1
    msr     CNTVOFF_EL2, xzr
    // Don't trap FP/SIMD at EL2 (CPTR_EL2.TFP = 0, RES1 bits set).
    mov     x1, #0x33ff
    msr     CPTR_EL2, x1
    // Eret into EL1h with DAIF masked.
    mov     x1, #0x3c5
    msr     SPSR_EL2, x1
    adr     x1, .L_el1
    msr     ELR_EL2, x1
    eret

.L_el1:
    // FP/SIMD on at EL1: the compiler uses q-registers for memcpy and friends.
    mov     x1, #(3 << 20)
    msr     CPACR_EL1, x1
    isb

    // Exception stack on SP_EL1, then switch to SP_EL0 for the boot stack.
    msr     SPSel, #1
    adrp    x1, __exception_stack
    add     x1, x1, #:lo12:__exception_stack
    add     x1, x1, #{EXCEPTION_STACK_SIZE}
    mov     sp, x1
    msr     SPSel, #0
    adrp    x1, __stack_top
    add     x1, x1, #:lo12:__stack_top
    mov     sp, x1

    // Zero BSS.
    adrp    x1, __bss_start
    add     x1, x1, #:lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, #:lo12:__bss_end
.L_bss:
    cmp     x1, x2
    b.hs    .L_bss_done
    stp     xzr, xzr, [x1], #16
    b       .L_bss
.L_bss_done:

    mov     x0, x19
    mov     x1, x20
    b       _start_rust

.L_park:
    wfe
    b       .L_park
.size _start, . - _start
.type _start, function
