// Exception vectors for EL1 (see src/exception.rs for the design).
//
// The kernel runs on SP_EL0; taking an exception switches to SP_EL1, the exception stack
// set up in boot.s. Each vector pushes an ExceptionContext (must match the Rust struct:
// x0..x30, SP_EL0, ELR, SPSR, ESR, FAR = 36 doublewords) and calls
// exception_dispatch(context, vector_number); when that returns, the context (possibly
// with a changed ELR) is restored and we eret.

.equ CONTEXT_SIZE, 36 * 8

.macro VECTOR number
.balign 0x80
    sub     sp, sp, #CONTEXT_SIZE
    stp     x0, x1, [sp, #16 * 0]
    mov     x1, #\number
    b       __exception_save_and_dispatch
.endm

.section .text.exception_vectors, "ax"
.balign 0x800
.global __exception_vectors
__exception_vectors:
    // Current EL, SP_EL0: the kernel's own code.
    VECTOR 0    // synchronous
    VECTOR 1    // IRQ
    VECTOR 2    // FIQ
    VECTOR 3    // SError
    // Current EL, SP_ELx: an exception inside an exception handler.
    VECTOR 4
    VECTOR 5
    VECTOR 6
    VECTOR 7
    // Lower EL, AArch64 and AArch32: nothing runs there; reported as unexpected.
    VECTOR 8
    VECTOR 9
    VECTOR 10
    VECTOR 11
    VECTOR 12
    VECTOR 13
    VECTOR 14
    VECTOR 15

__exception_save_and_dispatch:
    stp     x2, x3, [sp, #16 * 1]
    stp     x4, x5, [sp, #16 * 2]
    stp     x6, x7, [sp, #16 * 3]
    stp     x8, x9, [sp, #16 * 4]
    stp     x10, x11, [sp, #16 * 5]
    stp     x12, x13, [sp, #16 * 6]
    stp     x14, x15, [sp, #16 * 7]
    stp     x16, x17, [sp, #16 * 8]
    stp     x18, x19, [sp, #16 * 9]
    stp     x20, x21, [sp, #16 * 10]
    stp     x22, x23, [sp, #16 * 11]
    stp     x24, x25, [sp, #16 * 12]
    stp     x26, x27, [sp, #16 * 13]
    stp     x28, x29, [sp, #16 * 14]
    mrs     x2, SP_EL0
    stp     x30, x2, [sp, #16 * 15]
    mrs     x2, ELR_EL1
    mrs     x3, SPSR_EL1
    stp     x2, x3, [sp, #16 * 16]
    mrs     x2, ESR_EL1
    mrs     x3, FAR_EL1
    stp     x2, x3, [sp, #16 * 17]

    mov     x0, sp
    bl      exception_dispatch

    ldp     x2, x3, [sp, #16 * 16]
    msr     ELR_EL1, x2
    msr     SPSR_EL1, x3
    ldp     x0, x1, [sp, #16 * 0]
    ldp     x2, x3, [sp, #16 * 1]
    ldp     x4, x5, [sp, #16 * 2]
    ldp     x6, x7, [sp, #16 * 3]
    ldp     x8, x9, [sp, #16 * 4]
    ldp     x10, x11, [sp, #16 * 5]
    ldp     x12, x13, [sp, #16 * 6]
    ldp     x14, x15, [sp, #16 * 7]
    ldp     x16, x17, [sp, #16 * 8]
    ldp     x18, x19, [sp, #16 * 9]
    ldp     x20, x21, [sp, #16 * 10]
    ldp     x22, x23, [sp, #16 * 11]
    ldp     x24, x25, [sp, #16 * 12]
    ldp     x26, x27, [sp, #16 * 13]
    ldp     x28, x29, [sp, #16 * 14]
    ldr     x30, [sp, #16 * 15]
    add     sp, sp, #CONTEXT_SIZE
    eret
.size __exception_save_and_dispatch, . - __exception_save_and_dispatch
.type __exception_save_and_dispatch, function
